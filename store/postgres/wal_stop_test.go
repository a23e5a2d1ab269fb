package postgres_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox/store/postgres"
)

// The clean-stop and lost-stream cases are the store suite's (outboxtest, CleanStop and
// LostStream), which runs them in WAL mode in TestWALStoreSuite through walHarness; the helpers
// here serve them and TestWALStopInLargeTransaction.

// settledAll waits until the store's reader holds nothing unsettled.
func settledAll(t *testing.T, s *postgres.Store) {
	t.Helper()
	waitFor(t, 20*time.Second, "every streamed message to be settled", func() bool {
		st, err := s.SlotStatus(context.Background())
		return err == nil && st.Buffered == 0
	})
}

// proxy forwards TCP connections to a server until cut: then it closes every connection and
// refuses new ones (accepts and closes them), as a partition of one path does.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = l.Close()
		p.cutAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *proxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}
