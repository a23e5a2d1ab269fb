package postgres_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// settledAll waits until the store's reader holds nothing unsettled.
func settledAll(t *testing.T, s *postgres.Store) {
	t.Helper()
	waitFor(t, 20*time.Second, "every streamed message to be settled", func() bool {
		st, err := s.SlotStatus(context.Background())
		return err == nil && st.Buffered == 0
	})
}

// A relay stopped cleanly, its store closed, leaves nothing acknowledged for the next relay on
// the slot to publish again. The status interval is long so that only the stop can confirm:
// checked to fail (every first message published again) without the confirmation at the stop.
func TestWALCleanStopSendsNoAcknowledgedEventTwice(t *testing.T) {
	s, cfg := newWALStore(t, func(c *postgres.Config) { c.WAL.StatusInterval = time.Hour })
	ctx := context.Background()
	const n, m = 200, 50
	first := map[string]bool{}
	for i := 0; i < n; i += 10 {
		batch := make([]*outbox.Message, 10)
		for j := range batch {
			batch[j] = msg(t, "T", fmt.Sprintf("k%d", j%3), i+j)
		}
		add(t, s, batch...) // assigns the IDs
		for _, b := range batch {
			first[b.ID] = true
		}
	}
	tr := &recorder{}
	r := runRelay(t, s, tr, true)
	waitFor(t, 20*time.Second, "the first messages to be published", func() bool { return tr.count() >= n })
	settledAll(t, s)
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	next := openStore(t, cfg)
	var later []*outbox.Message
	for i := range m {
		later = append(later, msg(t, "T", fmt.Sprintf("k%d", i%3), n+i))
	}
	add(t, next, later...)
	tr2 := &recorder{}
	runRelay(t, next, tr2, true)
	waitFor(t, 20*time.Second, "the later messages to be published", func() bool {
		got := map[string]bool{}
		for _, p := range tr2.all() {
			got[p.ID] = true
		}
		for _, l := range later {
			if !got[l.ID] {
				return false
			}
		}
		return true
	})
	settledAll(t, next)
	again := 0
	for _, p := range tr2.all() {
		if first[p.ID] {
			again++
		}
	}
	if again > 0 {
		t.Fatalf("after a clean stop the next relay published %d of %d acknowledged messages again", again, n)
	}
}

// A transaction only partly acknowledged at a clean stop: its unsettled messages go to the
// table, so the slot can confirm past it and its acknowledged messages are not streamed again.
// What was never handed out is streamed again. Checked to fail (the acknowledged half comes
// back) without the spill at the stop.
func TestWALCleanStopPartlyAckedTransaction(t *testing.T) {
	s, cfg := newWALStore(t, nil)
	ctx := context.Background()
	partly := make([]*outbox.Message, 10)
	for i := range partly {
		partly[i] = msg(t, "T", fmt.Sprintf("k%d", i%2), i)
	}
	whole := []*outbox.Message{msg(t, "T", "", 100), msg(t, "T", "", 101)}
	add(t, s, partly...)
	add(t, s, whole...)
	syncStore(t, s)
	if got := claimAll(t, s, "a"); len(got) != len(partly)+len(whole) {
		t.Fatalf("claimed %d, want %d", len(got), len(partly)+len(whole))
	}
	var acked, released []string
	var failures []outbox.Failure
	for i, p := range partly {
		if i < 5 {
			acked = append(acked, p.ID)
		} else {
			released = append(released, p.ID)
			failures = append(failures, outbox.Failure{ID: p.ID, Release: true})
		}
	}
	acked = append(acked, idsOf(whole)...)
	if n, err := s.Ack(ctx, "a", acked); err != nil || n != len(acked) {
		t.Fatalf("ack = %d, %v", n, err)
	}
	if _, err := s.Nack(ctx, "a", failures); err != nil { // as a stopping relay releases its claim
		t.Fatal(err)
	}
	never := msg(t, "T", "k0", 200)
	walAdd(t, s, never)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	next := openStore(t, cfg)
	syncStore(t, next)
	got := map[string]bool{}
	for _, m := range claimAll(t, next, "b") {
		got[m.ID] = true
	}
	for _, id := range acked {
		if got[id] {
			t.Errorf("acknowledged message %s claimed again after a clean stop", id)
		}
	}
	for _, id := range append(released, never.ID) {
		if !got[id] {
			t.Errorf("unacknowledged message %s not claimable after the stop", id)
		}
	}
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

// A holder whose replication connection is cut while its pool works no longer holds the slot:
// once a standby has taken the slot and streamed the same transactions, the old holder leases
// nothing more from what it had streamed, and its settles of what it had leased change
// nothing (a failed publish is not written to the table behind the new holder's back). Checked
// to fail (the old holder leases the rest and spills its failure) without the rule.
func TestWALLostReplicationHandsOutNothing(t *testing.T) {
	admin := adminPool(t)
	ctx := context.Background()
	p := startProxy(t, "127.0.0.1:5432")
	holder, cfg := newWALStore(t, func(c *postgres.Config) {
		c.WAL.ReplicationURL = "postgres://root@" + p.addr() + "/test?sslmode=disable"
	})
	direct := cfg
	wal := *cfg.WAL
	wal.ReplicationURL = ""
	direct.WAL = &wal
	written := make([]*outbox.Message, 10)
	for i := range written {
		written[i] = msg(t, "T", "", i)
	}
	walAdd(t, holder, written...)
	old, err := holder.Claim(ctx, outbox.ClaimRequest{Token: "old", Limit: 5, Lease: time.Minute})
	if err != nil || len(old) != 5 {
		t.Fatalf("holder claimed %d, %v; want 5", len(old), err)
	}

	p.cutAll()
	standby := openStore(t, direct)
	syncStore(t, standby) // the standby holds the slot and has streamed the messages
	waitFor(t, 10*time.Second, "the old holder to know it lost the slot", func() bool {
		st, err := holder.SlotStatus(ctx)
		return err == nil && !st.Holding
	})
	fresh := claimAll(t, standby, "new")
	if len(fresh) != len(written) {
		t.Fatalf("the new holder claimed %d, want %d", len(fresh), len(written))
	}
	leasedByNew := map[string]bool{}
	for _, m := range fresh {
		leasedByNew[m.ID] = true
	}
	more, err := holder.Claim(ctx, outbox.ClaimRequest{Token: "old-2", Limit: 1000, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	both := 0
	for _, m := range more {
		if leasedByNew[m.ID] {
			both++
		}
	}
	if both > 0 {
		t.Errorf("after losing the slot the old holder leased %d messages the new holder holds", both)
	}
	failures := make([]outbox.Failure, len(old))
	for i, m := range old {
		failures[i] = outbox.Failure{ID: m.ID, Error: "broker said no"}
	}
	_, _ = holder.Nack(ctx, "old", failures) // refused or ignored: either way nothing is written
	var inTable int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+holder.Table()).Scan(&inTable); err != nil {
		t.Fatal(err)
	}
	if inTable != 0 {
		t.Errorf("the old holder wrote %d of the messages it had streamed to the table after losing the slot", inTable)
	}
	_ = holder.Close()
}
