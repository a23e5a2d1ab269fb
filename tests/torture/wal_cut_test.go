//go:build torture

package torture

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards TCP connections to a server until it is cut: then it closes every
// connection it forwards and refuses new ones (accepts and closes them at once) until it is
// restored, as a partition of one network path does. Each relay of a lane in
// wal-replication-cut has one for its replication connection, its pool going direct.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	// wasCut and since say whether the proxy was ever cut, and how many connections it forwarded
	// since it was last restored.
	wasCut bool
	since  int
	wg     sync.WaitGroup
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut { // cut while dialling
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.since++
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(up, c) })
		p.wg.Go(func() { p.pipe(c, up) })
	}
}

// pipe copies src to dst until either ends, then closes both: the server sees its replication
// client go away at once, as it would see a reset.
func (p *cutProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cutAll closes every forwarded connection and refuses new ones until restore.
func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut, p.wasCut = true, true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.cut, p.since = false, 0
	p.mu.Unlock()
}

// reconnected reports whether the relay behind the proxy connected through it since its last
// cut (or it was never cut): a relay cut off retries with a growing backoff, and until its
// first retry after the restore it is no standby ready to take the slot.
func (p *cutProxy) reconnected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.wasCut || p.since > 0
}

func (p *cutProxy) close() {
	_ = p.l.Close()
	p.cutAll()
	p.wg.Wait()
}

// replicationProxies starts one cutProxy per relay of a WAL lane, to pgURL's server, and
// returns them with the flags that send slot i's replication connection through its own.
func replicationProxies(t *testing.T, pgURL string, relays int) ([]*cutProxy, func(i int) []string) {
	t.Helper()
	u, err := url.Parse(pgURL)
	if err != nil {
		t.Fatalf("PostgreSQL URL: %v", err)
	}
	proxies := make([]*cutProxy, relays)
	urls := make([]string, relays)
	for i := range proxies {
		proxies[i] = startCutProxy(t, u.Host)
		via := *u
		via.Host = proxies[i].addr()
		if urls[i], err = withAppName(via.String(), relayAppName(i)); err != nil {
			t.Fatal(err)
		}
	}
	return proxies, func(i int) []string { return []string{"-wal-replication-url", urls[i]} }
}

// cutReplication cuts, n times in every WAL lane at random moments spread over about d, the
// replication path of the relay holding the slot (its proxy) for replicationCut, and records
// how soon another relay held the slot; a cut the standby did not take over within fails. A
// surge comes first, so that the holder most likely has streamed messages it has not handed out
// yet, or holds them in flight, when it is cut.
func cutReplication(t *testing.T, ctx context.Context, lanes []*lane, n int, d time.Duration) {
	gap := max(time.Second, (d-time.Duration(n)*replicationCut)/time.Duration(n))
	var wg sync.WaitGroup
	for _, ln := range lanes {
		if len(ln.proxies) == 0 {
			continue
		}
		surge := surger(ln)
		wg.Go(func() {
			for k := range n {
				if !sleep(ctx, time.Duration(float64(gap)*(0.5+rand.Float64()))) {
					return
				}
				if err := surge.commit(ctx, k, burst); err != nil {
					t.Errorf("%s: surge: %v", ln.name, err)
					return
				}
				sleep(ctx, time.Duration(rand.IntN(40))*time.Millisecond)
				if err := ln.cutHolder(ctx); err != nil {
					t.Errorf("%s: %v", ln.name, err)
				}
			}
		})
	}
	wg.Wait()
}

// cutHolder cuts the replication path of the lane's holder for replicationCut, once every
// other relay is back on its own path after an earlier cut.
func (ln *lane) cutHolder(ctx context.Context) error {
	var holder int
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		holder, err = ln.holderSlot(ctx)
		ready := holder >= 0
		for i, p := range ln.proxies {
			ready = ready && (i == holder || p.reconnected())
		}
		if ready {
			break
		}
		if time.Now().After(deadline) || !sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("no relay held the slot with the others back on their paths for 10 s before a cut (holder %d, %v)", holder, err)
		}
	}
	p := ln.proxies[holder]
	cutAt := time.Now()
	p.cutAll()
	defer p.restore()
	next, err := ln.waitHolder(ctx, replicationCut, holder)
	took := time.Since(cutAt)
	ln.mu.Lock()
	ln.cuts++
	if next >= 0 {
		ln.cutTakeovers = append(ln.cutTakeovers, took)
	}
	ln.mu.Unlock()
	if next < 0 {
		return fmt.Errorf("the standby did not take the slot within the %v the holder %s's replication path was cut (%v)",
			replicationCut, relayAppName(holder), err)
	}
	sleep(ctx, replicationCut-took)
	return nil
}

// cutTimes renders the median and longest time from a cut to another relay holding the slot.
func (ln *lane) cutTimes() string {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if len(ln.cutTakeovers) == 0 {
		return "-"
	}
	d := slices.Sorted(slices.Values(ln.cutTakeovers))
	return fmt.Sprintf("%v, %v", d[len(d)/2].Round(10*time.Millisecond), d[len(d)-1].Round(10*time.Millisecond))
}
