package walbench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

// LargeTxOptions tunes LargeTx.
type LargeTxOptions struct {
	// Events in the one transaction. Default 100000.
	Events int
	// PayloadBytes of each event (incompressible JSON). Default 32768.
	PayloadBytes int
	// MaxBufferedBytes is the reader's byte bound (postgres.WALConfig.MaxBufferedBytes).
	// Default postgres.DefaultWALMaxBufferedBytes.
	MaxBufferedBytes int64
}

// LargeTxResult is one transaction far larger than the WAL reader's buffer, written while a
// relay's reader holds the slot and drained through outbox.Relay with its default batch size and
// concurrency: the reader writes it to the table as it is decoded, within its bound, and the
// table path delivers it. The RSS figures are the process's (writer and relay alike, in one
// process): the peak during the drain (VmHWM after resetting it, or VmRSS sampled every 10ms
// where the reset is refused) over the resident memory before the drain. The documented bound
// is what the reader holds, MaxBufferedBytes of streamed messages (docs/wal.md); PeakOverBound
// is the peak over the base in units of it.
type LargeTxResult struct {
	Events       int     `json:"events"`
	PayloadBytes int     `json:"payload_bytes"`
	PayloadMiB   float64 `json:"payload_mib"`
	// WALMiB is the WAL the transaction's write added; SlotKeepMiB the server's
	// max_slot_wal_keep_size (-1: unlimited), which must hold the transaction and the table
	// writes of its drain (the slot cannot confirm past the transaction until it is all written
	// to the table).
	WALMiB      float64 `json:"transaction_wal_mib"`
	SlotKeepMiB float64 `json:"max_slot_wal_keep_size_mib"`
	// DrainWALMiB is the WAL written from the relay's start to the last event published.
	DrainWALMiB float64 `json:"drain_wal_mib"`
	BatchSize   int     `json:"batch_size"`
	Concurrency int     `json:"concurrency"`
	// WriteSeconds is the transaction's write, DrainSeconds from the relay's start to the last
	// event published.
	WriteSeconds float64 `json:"write_seconds"`
	DrainSeconds float64 `json:"drain_seconds"`
	EventsPerSec float64 `json:"events_per_sec"`
	MiBPerSec    float64 `json:"payload_mib_per_sec"`
	// Resident memory in MiB.
	BaseRSSMiB    float64 `json:"base_rss_mib"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	PeakSource    string  `json:"peak_source"` // VmHWM or sampled VmRSS
	PeakOverMiB   float64 `json:"peak_over_base_mib"`
	BoundMiB      float64 `json:"documented_bound_mib"`
	PeakOverBound float64 `json:"peak_over_base_vs_bound"`
	PeakHeapMiB   float64 `json:"peak_heap_inuse_mib"`
	Duplicates    int     `json:"duplicates"`
	Missing       int     `json:"missing"`
	PendingAfter  int64   `json:"pending_after"`
	// ReaderHeldPeak is the most events the reader held, sampled every 100ms (SlotStatus).
	ReaderHeldPeak int `json:"reader_peak_buffered_events"`
}

// LargeTx writes one transaction of Events × PayloadBytes while a WAL-mode store's reader holds
// the slot, then drains it through outbox.Relay, counting every event once. It refuses to start
// when the server's max_slot_wal_keep_size cannot hold the transaction and its drain's table
// writes (about twice the payload): the server would invalidate the slot halfway.
func LargeTx(ctx context.Context, pool *pgxpool.Pool, o LargeTxOptions) (LargeTxResult, error) {
	if o.Events <= 0 {
		o.Events = 100000
	}
	if o.PayloadBytes <= 0 {
		o.PayloadBytes = 32 << 10
	}
	if o.MaxBufferedBytes <= 0 {
		o.MaxBufferedBytes = postgres.DefaultWALMaxBufferedBytes
	}
	if o.PayloadBytes < 64 {
		return LargeTxResult{}, errors.New("walbench: large transaction: PayloadBytes must be at least 64")
	}
	if err := NeedLogical(ctx, pool); err != nil {
		return LargeTxResult{}, err
	}
	r := LargeTxResult{
		Events: o.Events, PayloadBytes: o.PayloadBytes, PayloadMiB: float64(o.Events) * float64(o.PayloadBytes) / (1 << 20),
		BoundMiB: float64(o.MaxBufferedBytes) / (1 << 20), BatchSize: outbox.DefaultBatchSize, Concurrency: outbox.DefaultConcurrency,
	}
	var keep int64
	if err := pool.QueryRow(ctx, "SELECT setting::int8 FROM pg_settings WHERE name = 'max_slot_wal_keep_size'").Scan(&keep); err != nil {
		return r, fmt.Errorf("walbench: large transaction: %w", err)
	}
	r.SlotKeepMiB = float64(keep) // the setting is in MB
	if keep >= 0 && 2.2*r.PayloadMiB+256 > float64(keep) {
		return r, fmt.Errorf("walbench: large transaction: %.0f MiB of payload needs about %.0f MiB of retained WAL (the transaction, then its table writes), over max_slot_wal_keep_size %d MB: the server would invalidate the slot; use fewer events or raise the setting",
			r.PayloadMiB, 2.2*r.PayloadMiB+256, keep)
	}
	sb, err := newSandbox(ctx, pool, true)
	if err != nil {
		return r, err
	}
	defer sb.drop()
	sb.cfg.WAL.MaxBufferedBytes = o.MaxBufferedBytes
	if err := sb.reopen(ctx); err != nil {
		return r, err
	}
	// The reader holds the slot before the write, as a running relay's does.
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err = sb.store.Sync(syncCtx)
	cancel()
	if err != nil {
		return r, fmt.Errorf("walbench: large transaction: %w", err)
	}

	start := time.Now()
	walBefore, err := currentWAL(ctx, pool)
	if err != nil {
		return r, err
	}
	if err := writeLarge(ctx, sb, o.Events, o.PayloadBytes); err != nil {
		return r, err
	}
	walAfter, err := currentWAL(ctx, pool)
	if err != nil {
		return r, err
	}
	r.WriteSeconds = time.Since(start).Seconds()
	r.WALMiB = float64(walAfter-walBefore) / (1 << 20)

	seen := make([]atomic.Bool, o.Events)
	var got, dups, bad atomic.Int64
	done := make(chan struct{})
	publish := func(_ context.Context, msgs []*outbox.Message) error {
		for _, m := range msgs {
			i, ok := eventIndex(m.Payload)
			if !ok || i >= o.Events {
				bad.Add(1)
				continue
			}
			if seen[i].Swap(true) {
				dups.Add(1)
				continue
			}
			if got.Add(1) == int64(o.Events) {
				close(done)
			}
		}
		return nil
	}
	relay, err := outbox.NewRelay(sb.store, outbox.TransportFunc(publish), outbox.Config{})
	if err != nil {
		return r, err
	}
	mem := startPeak(sb.store)
	drainStart := time.Now()
	if err := relay.Start(ctx); err != nil {
		mem.stop()
		return r, err
	}
	waitCtx, cancelWait := context.WithTimeout(ctx, 2*time.Hour)
	defer cancelWait()
	slotLost := watchSlot(waitCtx, sb.store)
	var waitErr error
	select {
	case <-done:
	case err := <-slotLost:
		waitErr = err
	case <-waitCtx.Done():
		waitErr = waitCtx.Err()
	}
	r.DrainSeconds = time.Since(drainStart).Seconds()
	walEnd, _ := currentWAL(ctx, pool)
	r.DrainWALMiB = float64(walEnd-walAfter) / (1 << 20)
	p := mem.stop()
	r.BaseRSSMiB, r.PeakRSSMiB, r.PeakSource, r.PeakHeapMiB = p.base, p.peak, p.source, p.heap
	r.ReaderHeldPeak = p.readerEvents
	stopErr := relay.Stop(context.Background())
	r.Duplicates = int(dups.Load())
	r.Missing = o.Events - int(got.Load())
	if waitErr != nil {
		return r, fmt.Errorf("walbench: large transaction: %d of %d published: %w", got.Load(), o.Events, waitErr)
	}
	if stopErr != nil {
		return r, fmt.Errorf("walbench: large transaction: %w", stopErr)
	}
	if n := bad.Load(); n > 0 {
		return r, fmt.Errorf("walbench: large transaction: %d published events were not the benchmark's", n)
	}
	if c, err := sb.store.Counts(ctx); err == nil {
		r.PendingAfter = c.Pending
	}
	r.PeakOverMiB = r.PeakRSSMiB - r.BaseRSSMiB
	r.PeakOverBound = ratio(r.PeakOverMiB, r.BoundMiB)
	r.EventsPerSec = float64(o.Events) / r.DrainSeconds
	r.MiBPerSec = r.PayloadMiB / r.DrainSeconds
	return r, nil
}

// writeLarge writes n events of size bytes in one transaction, in Adds of 100, over 1000 keys.
// Each payload is {"i":N,"p":"…"} padded with random base64 (incompressible, as real payloads
// mostly are); only one Add's messages are in memory at a time.
func writeLarge(ctx context.Context, sb *sandbox, n, size int) error {
	raw := make([]byte, size)
	_, _ = rand.Read(raw)
	pad := base64.StdEncoding.EncodeToString(raw)
	const per = 100
	err := pgx.BeginFunc(ctx, sb.pool, func(tx pgx.Tx) error {
		for done := 0; done < n; done += per {
			batch := make([]*outbox.Message, 0, per)
			for i := done; i < n && i < done+per; i++ {
				head := `{"i":` + strconv.Itoa(i) + `,"p":"`
				body := head + pad[:size-len(head)-2] + `"}`
				batch = append(batch, &outbox.Message{Type: "BATCH_ITEM", Key: fmt.Sprintf("job-%d", i%1000), Payload: []byte(body)})
			}
			if err := sb.store.Add(ctx, tx, batch...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walbench: large transaction: write: %w", err)
	}
	return nil
}

// eventIndex reads N from a payload {"i":N,...}.
func eventIndex(p []byte) (int, bool) {
	s, ok := strings.CutPrefix(string(p[:min(len(p), 24)]), `{"i":`)
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(s, ',')
	if end < 0 {
		return 0, false
	}
	i, err := strconv.Atoi(s[:end])
	return i, err == nil
}

func currentWAL(ctx context.Context, pool *pgxpool.Pool) (pglogrepl.LSN, error) {
	var lsn pglogrepl.LSN
	if err := pool.QueryRow(ctx, "SELECT pg_current_wal_lsn()").Scan(&lsn); err != nil {
		return 0, fmt.Errorf("walbench: %w", err)
	}
	return lsn, nil
}

// watchSlot reports an error when the slot loses its WAL or disappears (every second).
func watchSlot(ctx context.Context, store *postgres.Store) <-chan error {
	out := make(chan error, 1)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			st, err := store.SlotStatus(ctx)
			if err == nil && (!st.Exists || st.WALStatus == "lost") {
				out <- fmt.Errorf("replication slot %s lost its WAL (max_slot_wal_keep_size) or is gone", st.Slot)
				return
			}
		}
	}()
	return out
}

// peakSampler measures the process's peak resident memory during the drain: VmHWM after
// resetting it (writing 5 to /proc/self/clear_refs), with VmRSS sampled every 10ms besides,
// for kernels that refuse the reset; and the Go heap in use and the reader's buffer.
type peakSampler struct {
	stopCh  chan struct{}
	wg      sync.WaitGroup
	hwm     bool
	base    float64
	sampled float64
	heap    float64
	store   *postgres.Store
	events  int
}

type peaks struct {
	base, peak, heap float64
	source           string
	readerEvents     int
}

func startPeak(store *postgres.Store) *peakSampler {
	runtime.GC()
	debug.FreeOSMemory()
	s := &peakSampler{stopCh: make(chan struct{}), store: store, base: rssMiB()}
	s.sampled = s.base
	s.hwm = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	s.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for i := 0; ; i++ {
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
			s.sampled = max(s.sampled, rssMiB())
			if i%10 == 0 { // ReadMemStats stops the world: every 100ms
				runtime.ReadMemStats(&ms)
				s.heap = max(s.heap, float64(ms.HeapInuse)/(1<<20))
				if st, err := s.store.SlotStatus(context.Background()); err == nil {
					s.events = max(s.events, st.Buffered)
				}
			}
		}
	})
	return s
}

func (s *peakSampler) stop() peaks {
	close(s.stopCh)
	s.wg.Wait()
	p := peaks{base: s.base, peak: max(s.sampled, rssMiB()), source: "sampled VmRSS", heap: s.heap, readerEvents: s.events}
	if s.hwm {
		if hwm := statusMiB("VmHWM:"); hwm > 0 {
			p.peak, p.source = max(hwm, p.peak), "VmHWM"
		}
	}
	return p
}

// statusMiB reads a kB field of /proc/self/status in MiB; 0 where there is none.
func statusMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
