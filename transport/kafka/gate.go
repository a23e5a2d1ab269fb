package kafka

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// gate holds back every write of one producer client to the brokers while a generation is
// being buffered on it, and lets writes go while it flushes or idles.
//
// Manual flushing alone does not keep a client from sending: a produce loop that franz-go
// started during the previous flush may still be running when that flush returns, and it sends
// whatever is buffered by then, part of the next generation included. Were that part refused
// before the rest was buffered, the rest would go out in a new batch and be written, behind a
// failed record of its key. Holding the client's writes closes that window whatever the
// scheduling: no byte of a generation leaves before all of it is buffered.
type gate struct {
	mu   sync.Mutex
	open chan struct{} // closed while writes may go
	stop <-chan struct{}
}

func newGate(stop <-chan struct{}) *gate {
	g := &gate{open: make(chan struct{}), stop: stop}
	close(g.open)
	return g
}

// hold makes writes wait.
func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

// release lets writes go.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

// wait returns once writes may go, or the transport closes.
func (g *gate) wait() {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-g.stop:
	}
}

// gatedConn is a broker connection whose writes pass the gate.
type gatedConn struct {
	net.Conn
	g *gate
}

func (c gatedConn) Write(b []byte) (int, error) {
	c.g.wait()
	return c.Conn.Write(b)
}

// dialer dials brokers as the transport's config says (timeout, TLS), with every connection
// behind g.
func dialer(c Config, g *gate) func(ctx context.Context, network, host string) (net.Conn, error) {
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		d := net.Dialer{Timeout: c.DialTimeout, KeepAlive: 30 * time.Second}
		raw, err := d.DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		conn := net.Conn(gatedConn{Conn: raw, g: g})
		if c.TLS == nil {
			return conn, nil
		}
		tc := c.TLS.Clone()
		if tc.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				tc.ServerName = h
			}
		}
		return tls.Client(conn, tc), nil
	}
}
