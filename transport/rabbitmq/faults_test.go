package rabbitmq_test

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a TCP proxy on loopback between the transport and the broker, for fault injection
// only: it can stop passing the broker's bytes to the client (so confirms never arrive) and cut
// every connection. Everything else it passes through untouched.
type proxy struct {
	ln     net.Listener
	target string
	muted  atomic.Bool
	// refusing makes the proxy close every new connection at once, as a broker that is down
	// does (set it, then cut the connections that are open).
	refusing atomic.Bool
	wg       sync.WaitGroup
	// stall, while held, stops the proxy reading what the client sends, as a broker does while
	// it blocks publishers: the client's writes fill the socket buffers and then block.
	stall sync.RWMutex

	mu    sync.Mutex
	conns []net.Conn
	count int
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// url returns brokerURL with its host replaced by the proxy's.
func (p *proxy) url(t *testing.T, brokerURL string) string {
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refusing.Load() {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.count++
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(s, c, false) })
		p.wg.Go(func() { p.pipe(c, s, true) })
	}
}

// pipe copies from src to dst; fromBroker bytes are dropped while muted.
func (p *proxy) pipe(dst, src net.Conn, fromBroker bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		if !fromBroker {
			// Waits while the proxy stalls the client's bytes: the lock is a gate, guarding nothing.
			p.stall.RLock()
			p.stall.RUnlock() //nolint:staticcheck // SA2001: an empty critical section on purpose
		}
		n, err := src.Read(buf)
		if n > 0 && !(fromBroker && p.muted.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or the proxy cut the connection
		}
	}
}

// cut closes every proxied connection.
func (p *proxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// connections returns how many client connections the proxy accepted.
func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}
