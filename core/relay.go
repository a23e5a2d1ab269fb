package core

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// storeBackoff spaces retries of failed store calls (claim, ack, nack). It is short and capped
// low on purpose: a relay must resume within seconds of its database coming back.
var storeBackoff = Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// maxErrorText bounds the error text a failure stores.
const maxErrorText = 2048

// Relay moves messages from a Store to a Transport: it claims due messages in batches, publishes
// them through the middleware chain, acknowledges what was published and records what failed.
// It is safe for concurrent use; Start and Stop may be called again after Stop.
type Relay struct {
	store   Store
	publish Handler
	cfg     Config
	log     *zap.Logger

	claimed, published, failed, dead, batches atomic.Int64
	lastLag                                   atomic.Int64

	mu  sync.Mutex
	run *run // nil while stopped
}

// run is the state of one Start..Stop cycle.
type run struct {
	stop    chan struct{}      // closed by Stop: no new claims
	ctx     context.Context    // cancelled when Stop's deadline passes: aborts publishes
	cancel  context.CancelFunc //
	wake    chan struct{}      // capacity 1: a token for one idle worker to claim
	workers sync.WaitGroup
	aux     sync.WaitGroup // ticker, notifier forwarder, retention
}

func (rn *run) kick() {
	select {
	case rn.wake <- struct{}{}:
	default:
	}
}

func (rn *run) stopping() bool {
	select {
	case <-rn.stop:
		return true
	default:
		return false
	}
}

// sleep waits d and reports false when the relay was told to stop meanwhile.
func (rn *run) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-rn.stop:
		return false
	case <-t.C:
		return true
	}
}

// NewRelay returns a relay that moves messages from store to transport. It validates cfg.
func NewRelay(store Store, transport Transport, cfg Config) (*Relay, error) {
	if store == nil {
		return nil, &ConfigError{Component: "relay", Field: "store", Problem: "is nil"}
	}
	if transport == nil {
		return nil, &ConfigError{Component: "relay", Field: "transport", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Relay{
		store:   store,
		publish: Chain(transport.Publish, cfg.Middleware...),
		cfg:     cfg,
		log:     cfg.Logger.Named("outbox.relay").With(zap.String("owner", cfg.Owner)),
	}, nil
}

// Config returns the relay's config with defaults filled in.
func (r *Relay) Config() Config { return r.cfg }

// Run starts the relay and blocks until ctx ends, then stops it gracefully within
// Config.ShutdownTimeout. It returns nil after a clean stop.
func (r *Relay) Run(ctx context.Context) error {
	if err := r.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	return r.Stop(stopCtx)
}

// Start launches the relay's goroutines and returns at once. ctx only bounds starting; the
// relay runs until Stop.
func (r *Relay) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run != nil {
		return ErrRunning
	}
	runCtx, cancel := context.WithCancel(context.Background())
	rn := &run{stop: make(chan struct{}), ctx: runCtx, cancel: cancel, wake: make(chan struct{}, 1)}
	r.run = rn

	if n, ok := r.store.(Notifier); ok {
		signals, err := n.Listen(runCtx)
		if err != nil {
			r.log.Warn("store notifications unavailable; polling only", zap.Error(err), zap.Duration("poll_interval", r.cfg.PollInterval))
		} else {
			rn.aux.Add(1)
			go r.forward(rn, signals)
		}
	}
	rn.aux.Add(1)
	go r.poll(rn)
	if ret, ok := r.store.(Retention); ok && r.cfg.RetainDelivered > 0 {
		rn.aux.Add(1)
		go r.retain(rn, ret)
	}
	rn.workers.Add(r.cfg.Concurrency)
	for range r.cfg.Concurrency {
		go r.work(rn)
	}
	rn.kick()
	r.log.Info("relay started", zap.Int("batch_size", r.cfg.BatchSize), zap.Int("concurrency", r.cfg.Concurrency), zap.Bool("ordered", r.cfg.Ordered))
	return nil
}

// Stop stops claiming, lets in-flight batches finish publishing and be acknowledged or
// recorded as failed, and returns. When ctx ends first, in-flight publishes are cancelled, their
// messages are released for another attempt, and Stop returns ctx's error. Stop on a stopped
// relay returns nil.
func (r *Relay) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rn := r.run
	if rn == nil {
		return nil
	}
	close(rn.stop)
	workersDone := make(chan struct{})
	go func() { rn.workers.Wait(); close(workersDone) }()
	var err error
	select {
	case <-workersDone:
	case <-ctx.Done():
		err = ctx.Err()
		rn.cancel() // abort publishes; workers release their messages and return
		<-workersDone
	}
	rn.cancel()
	rn.aux.Wait()
	r.run = nil
	r.log.Info("relay stopped", zap.Error(err))
	return err
}

// Stats is a snapshot of a relay's counters since it was created.
type Stats struct {
	Claimed   int64 // messages claimed
	Published int64 // messages published and acknowledged
	Failed    int64 // failed publishes that will be retried
	Dead      int64 // messages moved to dead
	Batches   int64 // non-empty claims
	// LastLag is the age (now - CreatedAt) of the oldest message of the last published batch.
	LastLag time.Duration
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	return Stats{
		Claimed:   r.claimed.Load(),
		Published: r.published.Load(),
		Failed:    r.failed.Load(),
		Dead:      r.dead.Load(),
		Batches:   r.batches.Load(),
		LastLag:   time.Duration(r.lastLag.Load()),
	}
}

// forward turns store notifications into wake-ups until the notifier closes its channel.
func (r *Relay) forward(rn *run, signals <-chan struct{}) {
	defer rn.aux.Done()
	for range signals {
		rn.kick()
	}
}

// poll wakes a worker every PollInterval: the fallback that finds messages whose notification
// was lost, and retries whose backoff has passed.
func (r *Relay) poll(rn *run) {
	defer rn.aux.Done()
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-rn.stop:
			return
		case <-t.C:
			rn.kick()
		}
	}
}

// work is one claim-publish-ack loop. It claims when woken and keeps claiming while batches
// come back full, waking another worker to help.
func (r *Relay) work(rn *run) {
	defer rn.workers.Done()
	storeFailures := 0
	for {
		select {
		case <-rn.stop:
			return
		case <-rn.wake:
		}
		for !rn.stopping() {
			n, err := r.cycle(rn)
			if err != nil {
				storeFailures++
				delay := storeBackoff.Delay(storeFailures)
				r.log.Warn("claim failed; retrying", zap.Error(err), zap.Int("failures", storeFailures), zap.Duration("retry_in", delay))
				if !rn.sleep(delay) {
					return
				}
				continue
			}
			storeFailures = 0
			if n < r.cfg.BatchSize {
				break
			}
			rn.kick()
		}
	}
}

// cycle claims one batch, publishes it and settles it. It returns how many messages it claimed.
func (r *Relay) cycle(rn *run) (int, error) {
	msgs, err := r.store.Claim(rn.ctx, ClaimRequest{
		Owner:   r.cfg.Owner,
		Limit:   r.cfg.BatchSize,
		Lease:   r.cfg.Lease,
		Ordered: r.cfg.Ordered,
	})
	if err != nil {
		if rn.ctx.Err() != nil {
			return 0, nil // stopping: the claim was cancelled, not failed
		}
		return 0, err
	}
	if len(msgs) == 0 {
		return 0, nil
	}
	r.claimed.Add(int64(len(msgs)))
	r.batches.Add(1)
	r.deliver(rn, msgs)
	return len(msgs), nil
}

// deliver publishes msgs and records the outcome of each in the store.
func (r *Relay) deliver(rn *run, msgs []*Message) {
	ctx, cancel := context.WithTimeout(rn.ctx, r.cfg.PublishTimeout)
	err := r.publish(WithMaxAttempts(ctx, r.cfg.MaxAttempts), msgs)
	cancel()

	now := time.Now()
	aborted := rn.ctx.Err() != nil // Stop's deadline passed: not the messages' fault
	var batchErr *BatchError
	partial := err != nil && errors.As(err, &batchErr)
	acks := make([]string, 0, len(msgs))
	var failures []Failure
	var oldest time.Time
	for _, m := range msgs {
		cause := err
		if partial {
			cause = batchErr.Failed[m.ID]
		}
		if cause == nil {
			acks = append(acks, m.ID)
			if oldest.IsZero() || m.CreatedAt.Before(oldest) {
				oldest = m.CreatedAt
			}
			continue
		}
		failures = append(failures, r.failure(m, cause, now, aborted))
	}

	if len(acks) > 0 {
		r.settle(rn, "ack", func(ctx context.Context) error { return r.store.Ack(ctx, r.cfg.Owner, acks) })
		r.published.Add(int64(len(acks)))
		r.lastLag.Store(int64(now.Sub(oldest)))
	}
	if len(failures) > 0 {
		r.settle(rn, "nack", func(ctx context.Context) error { return r.store.Nack(ctx, r.cfg.Owner, failures) })
		r.log.Warn("publish failed", zap.Int("failed", len(failures)), zap.Int("batch", len(msgs)), zap.Error(err))
	}
}

// failure decides what becomes of a message whose publish failed.
func (r *Relay) failure(m *Message, cause error, now time.Time, aborted bool) Failure {
	attempt := m.Attempts + 1
	text := cause.Error()
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
	}
	f := Failure{ID: m.ID, Error: text, RetryAt: now.Add(r.cfg.Backoff.Delay(attempt))}
	switch {
	case aborted:
		f.RetryAt = now
	case IsPermanent(cause) || attempt >= r.cfg.MaxAttempts:
		f.Dead = true
		r.dead.Add(1)
		r.log.Error("message dead-lettered",
			zap.String("id", m.ID), zap.String("type", m.Type), zap.String("key", m.Key),
			zap.Int("attempts", attempt), zap.Bool("permanent", IsPermanent(cause)), zap.String("error", text))
		return f
	}
	r.failed.Add(1)
	return f
}

// settle runs an ack or nack, retrying store errors until it succeeds or the lease it protects
// has run out (then another relay publishes the messages again: a duplicate, never a loss).
func (r *Relay) settle(rn *run, op string, call func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rn.ctx), r.cfg.Lease)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return
		}
		delay := storeBackoff.Delay(attempt)
		r.log.Warn(op+" failed; retrying", zap.Error(err), zap.Int("attempt", attempt))
		select {
		case <-rn.ctx.Done(): // Stop's deadline passed: give up now rather than hold Stop
			r.log.Error(op+" abandoned at stop: the messages will be published again when their lease expires", zap.Error(err))
			return
		case <-ctx.Done():
			r.log.Error(op+" abandoned: the messages will be published again when their lease expires", zap.Error(err))
			return
		case <-time.After(delay):
		}
	}
}

// retain deletes delivered messages older than RetainDelivered, in bounded batches.
func (r *Relay) retain(rn *run, ret Retention) {
	defer rn.aux.Done()
	const batch = 1000
	t := time.NewTicker(r.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-rn.stop:
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-r.cfg.RetainDelivered)
		for !rn.stopping() {
			n, err := ret.DeleteDelivered(rn.ctx, cutoff, batch)
			if err != nil {
				r.log.Warn("retention failed", zap.Error(err))
				break
			}
			if n < batch {
				break
			}
		}
	}
}
