package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/sqs"
)

// lateTimeouts publishes through next and then, on every every-th call while budget lasts,
// reports a timeout although the broker took the messages: a publish whose answer was lost, so
// the relay publishes the batch again.
type lateTimeouts struct {
	next          outbox.Transport
	every, budget int

	mu              sync.Mutex
	calls, injected int
}

func (l *lateTimeouts) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if err := l.next.Publish(ctx, msgs); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.calls%l.every == 0 && l.injected < l.budget {
		l.injected++
		return fmt.Errorf("publish answer lost after the broker took it: %w", context.DeadlineExceeded)
	}
	return nil
}

func (l *lateTimeouts) count() int { l.mu.Lock(); defer l.mu.Unlock(); return l.injected }

var errHandlerFault = errors.New("handler failed after its change (injected)")

// TestExactlyOnce: writers → relay → SQS → consumers with duplicates injected at every hop;
// every committed event takes effect exactly once in the consumer's database, and no
// rolled-back event takes effect at all.
func TestExactlyOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		open func(*testing.T) *database
	}{{"PostgreSQL", postgresBackend}, {"SQLite", sqliteBackend}, {"MongoDB", mongoBackend}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := c.open(t)
			exactlyOnce(t, b)
		})
	}
}

func exactlyOnce(t *testing.T, b *database) {
	ctx := testCtx(t)
	url, admin := newQueue(t)
	tr := transport(t, url)
	relayCfg := outbox.Config{BatchSize: 10, Lease: time.Second, PollInterval: 50 * time.Millisecond,
		Backoff: outbox.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}}

	// A consumer process, killed with SIGKILL while its transaction is open.
	var proc *child
	if b.child != nil {
		proc = startChild(t, b, url)
	}

	// Relay A loses every ack after its third: what a relay that dies after publishing leaves
	// behind. Its leases run out and the messages are published again.
	faulty := outboxtest.NewFaultyStore(b.store, 7)
	faulty.CrashAfterAcks(3)
	relayA, err := outbox.NewRelay(faulty, tr, relayCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := relayA.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// Writers: committed events, and events written in transactions that roll back.
	const writers, perWriter = 4, 50
	var mu sync.Mutex
	committed, rolledBack := map[string]int{}, map[string]bool{}
	var wg sync.WaitGroup
	writeErrs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				n := w*perWriter + i
				m, err := outbox.NewMessage("ORDER_PLACED", map[string]int{"n": n})
				if err != nil {
					writeErrs <- err
					return
				}
				commit := n%25 != 13
				err = b.write(ctx, m, commit)
				switch {
				case commit && err != nil, !commit && !errors.Is(err, errRollback):
					writeErrs <- fmt.Errorf("write %d (commit %t): %v", n, commit, err)
					return
				}
				mu.Lock()
				if commit {
					committed[m.ID] = n
				} else {
					rolledBack[m.ID] = true
				}
				mu.Unlock()
			}
		}()
	}

	killed := ""
	if proc != nil {
		killed = proc.killMidHandler(t, 30*time.Second)
	}

	// The consumers that stay: SQS redelivers after a 1s visibility timeout, never extended,
	// so a slow handler's message is delivered again while its transaction is open; some
	// handlers fail after writing their effect on a first delivery.
	var calls, processed, dups, failed, slowed atomic.Int64
	var failedOnce sync.Map
	handler := func(ctx context.Context, m *outbox.Message) error {
		calls.Add(1)
		n, err := payloadN(m)
		if err != nil {
			return err
		}
		dup, err := b.consumer.handle(ctx, "billing", m, func(ctx context.Context) error {
			if n%67 == 5 {
				slowed.Add(1)
				select { // outlive the visibility timeout: SQS redelivers meanwhile
				case <-time.After(2500 * time.Millisecond):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if n%17 == 3 {
				if _, again := failedOnce.LoadOrStore(m.ID, true); !again {
					failed.Add(1)
					return errHandlerFault
				}
			}
			return nil
		})
		switch {
		case err != nil:
		case dup:
			dups.Add(1)
		default:
			processed.Add(1)
		}
		return err
	}
	// The second consumer's first deletes are lost before they reach SQS: handled, committed,
	// and delivered again.
	lostDeletesClient, lostDeletes := dropDeletesClient(3)
	defer lostDeletes.CloseIdleConnections()
	var consumers []*sqs.Consumer
	for i := range 2 {
		cfg := consumerConfig(url)
		if i == 1 {
			cfg = sqs.ConsumerConfig{Connection: sqs.Connection{Client: lostDeletesClient}, QueueURL: url}
		}
		cfg.Concurrency, cfg.VisibilityTimeout, cfg.ExtendInterval, cfg.WaitTime = 4, time.Second, -1, time.Second
		cfg.Handler = handler
		c, err := sqs.NewConsumer(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, c)
	}
	stopConsumers := func() {
		for _, c := range consumers {
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if err := c.Stop(sctx); err != nil {
				t.Errorf("stop consumer: %v", err)
			}
			cancel()
		}
	}
	defer stopConsumers()

	wg.Wait()
	close(writeErrs)
	for err := range writeErrs {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "relay A to lose acks", func() bool { return len(faulty.Lost()) > 0 })
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := relayA.Stop(stopCtx); err != nil {
		t.Fatalf("stop relay A: %v", err)
	}

	// Relay B takes over, and some of its publishes time out after SQS took them.
	late := &lateTimeouts{next: tr, every: 4, budget: 3}
	relayB, err := outbox.NewRelay(b.store, late, relayCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := relayB.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := relayB.Stop(sctx); err != nil {
			t.Errorf("stop relay B: %v", err)
		}
	}()

	// Done when every committed event took effect, the outbox holds nothing pending, and the
	// queue is empty (no duplicate still on its way).
	var effects map[string]int
	waitFor(t, 60*time.Second, "every committed event to take effect and the queue to drain", func() bool {
		effects, err = b.consumer.effects(ctx)
		if err != nil {
			t.Fatalf("count effects: %v", err)
		}
		if len(effects) < len(committed) {
			return false
		}
		counts, err := b.inspect.Counts(ctx)
		if err != nil {
			t.Fatalf("counts: %v", err)
		}
		if counts.Pending > 0 {
			return false
		}
		empty, err := queueEmpty(ctx, admin, url)
		if err != nil {
			t.Fatalf("queue attributes: %v", err)
		}
		return empty
	})
	stopConsumers()
	consumers = nil
	if effects, err = b.consumer.effects(ctx); err != nil {
		t.Fatal(err)
	}

	// Exactly once: every committed event took effect once, nothing else took effect.
	for id, n := range committed {
		if effects[id] != 1 {
			t.Errorf("event %d (%s) took effect %d times", n, id, effects[id])
		}
	}
	for id, times := range effects {
		if _, ok := committed[id]; !ok {
			t.Errorf("message %s took effect %d times but was never committed (rolled back: %t)", id, times, rolledBack[id])
		}
	}
	counts, err := b.inspect.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Dead != 0 {
		t.Errorf("%d events dead-lettered", counts.Dead)
	}

	// Every fault fired, and duplicates did reach the consumers.
	lost := len(faulty.Lost())
	switch {
	case lost == 0:
		t.Error("no ack was lost")
	case late.count() == 0:
		t.Error("no publish timed out after the broker took it")
	case failed.Load() == 0 || slowed.Load() == 0:
		t.Errorf("handler faults: %d failures, %d slow handlers", failed.Load(), slowed.Load())
	case lostDeletes.count() == 0:
		t.Error("no delete was lost")
	case dups.Load() == 0:
		t.Error("no duplicate reached the inbox: the test injected nothing")
	case proc != nil && effects[killed] != 1:
		t.Errorf("the event whose consumer was killed mid-transaction took effect %d times", effects[killed])
	}
	t.Logf("%s: %d events committed, %d rolled back; %d deliveries to the surviving consumers (+%d to the killed process); "+
		"%d processed, %d duplicates absorbed by the inbox, %d handler failures rolled back; faults: %d acks lost, %d late publish timeouts, %d delete calls lost, "+
		"%d slow handlers outliving the visibility timeout, %d consumer process killed mid-transaction; effects applied: %d distinct, each once",
		b.name, len(committed), len(rolledBack), calls.Load(), killedProcesses(proc), processed.Load(), dups.Load(), failed.Load(),
		lost, late.count(), lostDeletes.count(), slowed.Load(), killedProcesses(proc), len(effects))
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func killedProcesses(c *child) int {
	if c == nil {
		return 0
	}
	return 1
}
