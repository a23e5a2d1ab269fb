package walbench

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	"github.com/txoutbox/outbox/transport/memory"
)

// Relay settings of the drains: the table mode's fastest on a 2-core machine (pgbench's), used
// for both modes so they differ only by the store.
const (
	DrainBatchSize   = 500
	DrainConcurrency = 4
)

// DrainOptions tunes Drain.
type DrainOptions struct {
	// Events in the backlog. Default 1000000.
	Events int
	// Rounds is how many times each variant runs; results are medians. Default 1.
	Rounds int
}

// DrainResult compares draining a backlog written while no relay ran: outbox.Relay over the WAL
// mode's slot, outbox.Relay over the table mode's table, and a raw pglogrepl loop that only reads
// the slot and confirms, on backlogs of the same events. PeakRSS is the process's peak resident
// memory during each drain (sampled every 10ms), BaseRSS the resident memory before it; the
// memory transport's record of what it received is emptied as the drain goes, so neither counts
// it.
type DrainResult struct {
	Events      int `json:"events"`
	Rounds      int `json:"rounds"`
	BatchSize   int `json:"batch_size"`
	Concurrency int `json:"concurrency"`
	// Events per second of each variant.
	WALPerSec   float64 `json:"wal_events_per_sec"`
	TablePerSec float64 `json:"table_events_per_sec"`
	RawPerSec   float64 `json:"raw_pglogrepl_events_per_sec"`
	// WALVsTable is WALPerSec / TablePerSec; WALVsRaw is WALPerSec / RawPerSec.
	WALVsTable float64 `json:"wal_vs_table"`
	WALVsRaw   float64 `json:"wal_vs_raw"`
	// Resident memory in MiB.
	WALPeakRSSMiB   float64 `json:"wal_peak_rss_mib"`
	TablePeakRSSMiB float64 `json:"table_peak_rss_mib"`
	RawPeakRSSMiB   float64 `json:"raw_peak_rss_mib"`
	BaseRSSMiB      float64 `json:"base_rss_mib"`
	// The rate of every run, in run order.
	WALRuns   []float64 `json:"wal_runs"`
	TableRuns []float64 `json:"table_runs"`
	RawRuns   []float64 `json:"raw_runs"`
}

// drainRun is one measured drain.
type drainRun struct {
	perSec      float64
	peak, start float64 // RSS in MiB
}

// Drain fills a backlog and drains it the three ways, Rounds times in turn, each on a fresh
// schema (and slot) filled first.
func Drain(ctx context.Context, pool *pgxpool.Pool, o DrainOptions) (DrainResult, error) {
	if o.Events <= 0 {
		o.Events = 1000000
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if err := NeedLogical(ctx, pool); err != nil {
		return DrainResult{}, err
	}
	r := DrainResult{Events: o.Events, Rounds: o.Rounds, BatchSize: DrainBatchSize, Concurrency: DrainConcurrency}
	var walPeak, tablePeak, rawPeak, base []float64
	variants := []struct {
		wal   bool
		rates *[]float64
		peaks *[]float64
		run   func(*sandbox) (drainRun, error)
	}{
		{true, &r.RawRuns, &rawPeak, func(sb *sandbox) (drainRun, error) { return rawDrain(ctx, sb, o.Events) }},
		{true, &r.WALRuns, &walPeak, func(sb *sandbox) (drainRun, error) { return relayDrain(ctx, sb, o.Events) }},
		{false, &r.TableRuns, &tablePeak, func(sb *sandbox) (drainRun, error) { return relayDrain(ctx, sb, o.Events) }},
	}
	for range o.Rounds {
		for _, v := range variants {
			d, err := func() (drainRun, error) {
				sb, err := newSandbox(ctx, pool, v.wal)
				if err != nil {
					return drainRun{}, err
				}
				defer sb.drop()
				if err := sb.fill(ctx, o.Events); err != nil {
					return drainRun{}, err
				}
				return v.run(sb)
			}()
			if err != nil {
				return r, err
			}
			*v.rates = append(*v.rates, d.perSec)
			*v.peaks = append(*v.peaks, d.peak)
			base = append(base, d.start)
		}
	}
	r.WALPerSec, r.TablePerSec, r.RawPerSec = benchutil.Median(r.WALRuns), benchutil.Median(r.TableRuns), benchutil.Median(r.RawRuns)
	r.WALVsTable, r.WALVsRaw = ratio(r.WALPerSec, r.TablePerSec), ratio(r.WALPerSec, r.RawPerSec)
	r.WALPeakRSSMiB, r.TablePeakRSSMiB, r.RawPeakRSSMiB = benchutil.Median(walPeak), benchutil.Median(tablePeak), benchutil.Median(rawPeak)
	r.BaseRSSMiB = benchutil.Median(base)
	return r, nil
}

// relayDrain drains the sandbox's backlog through outbox.Relay to the memory transport.
func relayDrain(ctx context.Context, sb *sandbox, events int) (drainRun, error) {
	if err := sb.reopen(ctx); err != nil { // a reader of its own, started by the relay
		return drainRun{}, err
	}
	transport := memory.New()
	var got atomic.Int64
	done := make(chan struct{})
	transport.Subscribe(func(context.Context, *outbox.Message) error {
		if got.Add(1) == int64(events) {
			close(done)
		}
		return nil
	})
	relay, err := outbox.NewRelay(sb.store, transport, outbox.Config{BatchSize: DrainBatchSize, Concurrency: DrainConcurrency})
	if err != nil {
		return drainRun{}, err
	}
	mem := startSampling(transport)
	start := time.Now()
	if err := relay.Start(ctx); err != nil {
		mem.stop()
		return drainRun{}, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	select {
	case <-done:
	case <-waitCtx.Done():
	}
	elapsed := time.Since(start)
	peak, base := mem.stop()
	stopErr := relay.Stop(context.Background())
	if waitCtx.Err() != nil {
		return drainRun{}, fmt.Errorf("walbench: relay drain: %d of %d published: %w", got.Load(), events, waitCtx.Err())
	}
	if stopErr != nil {
		return drainRun{}, fmt.Errorf("walbench: relay drain: %w", stopErr)
	}
	return drainRun{perSec: float64(events) / elapsed.Seconds(), peak: peak, start: base}, nil
}

// rawDrain is the floor of the WAL mode: one replication connection streaming the slot with
// pgoutput, recognising the table's transactions by their messages' prefix (nothing decoded,
// published or buffered) and confirming each commit, as a hand-written pglogrepl consumer
// would. It counts transactions, not messages, so it does not depend on how the store packs
// events into WAL messages.
func rawDrain(ctx context.Context, sb *sandbox, events int) (drainRun, error) {
	_ = sb.store.Close() // the store never started a reader; the raw loop is the only one
	sb.store = nil
	cfg := sb.pool.Config().ConnConfig.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	// The prefix the store writes the table's messages under: others' messages in the same
	// database reach the slot too, and are not counted.
	prefix := "outbox:" + sb.schema + ".outbox"
	mem := startSampling(nil)
	start := time.Now()
	txs := (events + fillPerTx - 1) / fillPerTx
	n, err := rawLoop(ctx, cfg, sb.slot, sb.pub, prefix, txs)
	elapsed := time.Since(start)
	peak, base := mem.stop()
	if err != nil {
		return drainRun{}, fmt.Errorf("walbench: raw drain: %d of %d transactions read: %w", n, txs, err)
	}
	return drainRun{perSec: float64(events) / elapsed.Seconds(), peak: peak, start: base}, nil
}

// rawLoop reads the slot until it has seen txs transactions with messages under prefix, and
// returns how many it saw.
func rawLoop(ctx context.Context, cfg *pgconn.Config, slot, pub, prefix string, txs int) (int, error) {
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'", "messages 'true'"},
	})
	if err != nil {
		return 0, err
	}
	var (
		n         int
		ours      bool // the transaction being streamed has a message of the table's
		committed pglogrepl.LSN
	)
	confirm := func() error {
		return pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: committed})
	}
	next := time.Now().Add(time.Second)
	for n < txs {
		if time.Now().After(next) {
			if err := confirm(); err != nil {
				return n, err
			}
			next = time.Now().Add(time.Second)
		}
		recvCtx, cancel := context.WithDeadline(ctx, next)
		raw, err := conn.ReceiveMessage(recvCtx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			return n, err
		}
		cd, ok := raw.(*pgproto3.CopyData)
		if !ok {
			if e, isErr := raw.(*pgproto3.ErrorResponse); isErr {
				return n, pgconn.ErrorResponseToPgError(e)
			}
			continue
		}
		switch cd.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(cd.Data[1:])
			if err != nil {
				return n, err
			}
			if ka.ReplyRequested {
				if err := confirm(); err != nil {
					return n, err
				}
			}
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(cd.Data[1:])
			if err != nil {
				return n, err
			}
			msg, err := pglogrepl.Parse(xld.WALData)
			if err != nil {
				return n, err
			}
			switch m := msg.(type) {
			case *pglogrepl.BeginMessage:
				ours = false
			case *pglogrepl.LogicalDecodingMessage:
				ours = ours || m.Prefix == prefix
			case *pglogrepl.CommitMessage:
				committed = m.TransactionEndLSN
				if ours {
					n++
				}
			}
		}
	}
	return n, confirm()
}

// sampler records the process's peak resident memory while a drain runs, and empties the
// memory transport's record of received messages as it goes (it would otherwise hold the whole
// backlog, in every variant alike, and hide what the store holds).
type sampler struct {
	stopCh chan struct{}
	wg     sync.WaitGroup
	peak   float64
	start  float64
}

func startSampling(t *memory.Transport) *sampler {
	runtime.GC()
	debug.FreeOSMemory()
	s := &sampler{stopCh: make(chan struct{}), start: rssMiB()}
	s.peak = s.start
	s.wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stopCh:
				return
			case <-tick.C:
			}
			s.peak = max(s.peak, rssMiB())
			if t != nil {
				t.Reset()
			}
		}
	})
	return s
}

// stop ends the sampling and returns the peak and starting RSS in MiB.
func (s *sampler) stop() (peak, start float64) {
	close(s.stopCh)
	s.wg.Wait()
	return max(s.peak, rssMiB()), s.start
}

// rssMiB reads the process's resident set size (VmRSS) from /proc; 0 where there is none.
func rssMiB() float64 { return statusMiB("VmRSS:") }
