package outbox

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

// listenBackoff spaces attempts to start listening for store notifications; polling covers the
// gap meanwhile.
var listenBackoff = Backoff{Initial: 500 * time.Millisecond, Max: time.Minute, Multiplier: 2, Jitter: 0.2}

// stopGrace is how long Stop waits, past its deadline, for the acks and nacks that release
// what the relay holds. What is not released by then comes back when its lease expires.
const stopGrace = time.Second

// Relay moves messages from a Store to a Transport: it claims due messages in batches, publishes
// them through the middleware chain, acknowledges what was published and records what failed.
// It is safe for concurrent use; Start and Stop may be called again after Stop.
type Relay struct {
	store   Store
	publish Handler
	// keyOrder: the transport keeps per-key order within one Publish (KeyOrderer), so an
	// ordered batch goes out in one call instead of one message per key per call.
	keyOrder bool
	cfg      Config
	log      *zap.Logger
	tokens   tokens
	outage   outage
	suspects suspects // messages whose publish timed out, uncharged: see outage.go

	claimed, published, failed, dead, released, stale, batches atomic.Int64
	lastLag                                                    atomic.Int64

	// busy counts the workers inside a cycle. starved is set when, in ordered mode, a worker
	// found nothing while others were busy: every claimable key is held, and waking more workers
	// after a full batch would only spend the database on claims that find nothing. The poll
	// tick clears it, so a relay whose backlog spreads over more keys scales out again.
	busy    atomic.Int64
	starved atomic.Bool

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
	ko, ok := transport.(KeyOrderer)
	return &Relay{
		store:    store,
		publish:  Chain(transport.Publish, cfg.Middleware...),
		keyOrder: ok && ko.KeepsKeyOrder(),
		cfg:      cfg,
		log:      cfg.Logger.Named("outbox.relay").With(zap.String("owner", cfg.Owner)),
		tokens:   tokens{prefix: tokenPrefix(cfg.Owner)},
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

// Start launches the relay's goroutines and returns: it never waits for the transport, nor for
// a store that is down (notifications are set up in the background; the relay polls until they
// work). A store that is a SchemaChecker is asked once, for at most schemaCheckTimeout, whether
// its table is there: Start returns that error when it matches ErrSchema, and logs any other
// and starts. ctx only bounds starting; the relay runs until Stop.
func (r *Relay) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.checkSchema(ctx); err != nil {
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
		rn.aux.Add(1)
		go r.listen(rn, n)
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
	r.log.Info("relay started", zap.Int("batch_size", r.cfg.BatchSize), zap.Int("concurrency", r.cfg.Concurrency), zap.Bool("ordered", r.cfg.ordered()))
	switch {
	case r.cfg.Unordered:
		r.log.Warn("relay runs unordered (Config.Unordered): messages of one key may be published out of order, after a failed publish for instance")
	case !r.keyOrder:
		// Order holds either way; what the transport's default costs is round trips on busy keys.
		r.log.Info("ordered mode with a transport that does not keep key order within a publish: each publish carries at most one message per key " +
			"(a transport that keeps it, such as NATS or RabbitMQ with KeepKeyOrder or an SQS FIFO queue, takes a key's consecutive messages in one publish)")
	}
	return nil
}

// Stop stops claiming, lets in-flight batches finish publishing and be acknowledged or
// recorded as failed, and returns. When ctx ends first, in-flight publishes are cancelled and
// their messages released without an attempt being charged; Stop waits at most one more second
// for those releases (what is not released by then comes back when its lease expires) and
// returns ctx's error. Stop on a stopped relay returns nil.
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
	Failed    int64 // failed publishes that will be retried (an attempt was charged)
	Dead      int64 // messages moved to dead
	// Released counts messages handed back without an attempt charged: the transport was
	// unavailable, the relay was stopping, or an earlier message of their key failed first.
	Released int64
	// Stale counts acks and nacks the store ignored because the claim had lost its lease (it
	// expired and the message was claimed again): a sign that Lease is too short.
	Stale   int64
	Batches int64 // non-empty claims
	// LastLag is the age (now - CreatedAt) of the oldest message of the last published batch.
	LastLag time.Duration
	// TransportDownSince is when the transport became unavailable (the relay is paused and
	// probing it); zero while it is available.
	TransportDownSince time.Time
	// TransportError is the error that paused the relay, while TransportDownSince is set.
	TransportError string
}

// Stats returns the relay's counters.
func (r *Relay) Stats() Stats {
	since, cause := r.outage.state()
	return Stats{
		Claimed:            r.claimed.Load(),
		Published:          r.published.Load(),
		Failed:             r.failed.Load(),
		Dead:               r.dead.Load(),
		Released:           r.released.Load(),
		Stale:              r.stale.Load(),
		Batches:            r.batches.Load(),
		LastLag:            time.Duration(r.lastLag.Load()),
		TransportDownSince: since,
		TransportError:     cause,
	}
}

// listen turns store notifications into wake-ups. It starts listening in the background, so a
// database that is slow or unreachable never holds up Start, and listens again with backoff
// whenever it fails or the notifier gives up; polling covers the gaps.
func (r *Relay) listen(rn *run, n Notifier) {
	defer rn.aux.Done()
	for failures := 0; ; {
		signals, err := n.Listen(rn.ctx)
		if err == nil {
			failures = 0
			rn.kick() // anything committed while not listening
			for range signals {
				rn.kick()
			}
		}
		if rn.ctx.Err() != nil {
			return
		}
		failures++
		delay := listenBackoff.Delay(failures)
		if failures == 1 {
			r.log.Warn("store notifications unavailable; polling until they work", zap.Error(err), zap.Duration("poll_interval", r.cfg.PollInterval))
		} else {
			r.log.Debug("store notifications still unavailable", zap.Error(err), zap.Duration("retry_in", delay))
		}
		select {
		case <-rn.ctx.Done():
			return
		case <-time.After(delay):
		}
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
			r.starved.Store(false)
			rn.kick()
		}
	}
}

// work is one claim-publish-ack loop. It claims when woken and keeps claiming while there is
// work: after a full batch (waking another worker to help) and, in ordered mode, after any
// batch at all, since acking a run may have made the next messages of its keys due. While the
// transport is unavailable one worker probes it with small batches and the others wait.
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
			if delay, probing, down := r.outage.probe(); down {
				if !probing {
					break // another worker probes; a kick wakes this one when it is over
				}
				if !r.probeOnce(rn, delay, &storeFailures) {
					return
				}
				continue
			}
			limit := r.cfg.BatchSize
			others := r.busy.Add(1) - 1
			n, err := r.cycle(rn, limit)
			r.busy.Add(-1)
			if r.cfg.ordered() && err == nil && n == 0 && others > 0 {
				r.starved.Store(true)
			}
			if err != nil {
				if !r.storeFailed(rn, err, &storeFailures) {
					return
				}
				continue
			}
			storeFailures = 0
			if !r.outage.over() {
				continue // the transport just became unavailable: probe it, or leave that to another
			}
			if n == 0 || (n < limit && !r.cfg.ordered()) {
				break
			}
			if n == limit && !(r.cfg.ordered() && r.starved.Load()) {
				rn.kick()
			}
		}
	}
}

// probeOnce waits delay, then publishes one small batch to find out whether the transport is
// back. It reports false when the relay was told to stop.
func (r *Relay) probeOnce(rn *run, delay time.Duration, storeFailures *int) bool {
	defer r.outage.probeDone()
	if !rn.sleep(delay) {
		return false
	}
	n, err := r.cycle(rn, min(r.cfg.BatchSize, probeBatch))
	if err != nil {
		return r.storeFailed(rn, err, storeFailures)
	}
	*storeFailures = 0
	if n == 0 {
		r.outage.end(r.log, r.cfg.Clock(), "nothing left to probe with")
	}
	if r.outage.over() {
		rn.kick() // wake the other workers
	}
	return true
}

// storeFailed logs a failed claim and sleeps a backoff; false means the relay was told to stop.
func (r *Relay) storeFailed(rn *run, err error, failures *int) bool {
	*failures++
	delay := storeBackoff.Delay(*failures)
	r.log.Warn("claim failed; retrying", zap.Error(err), zap.Int("failures", *failures), zap.Duration("retry_in", delay))
	return rn.sleep(delay)
}

// cycle claims one batch under a new token, publishes it and settles it. It returns how many
// messages it claimed.
func (r *Relay) cycle(rn *run, limit int) (int, error) {
	token := r.tokens.next()
	msgs, err := r.store.Claim(rn.ctx, ClaimRequest{
		Token:   token,
		Limit:   limit,
		Lease:   r.cfg.Lease,
		Ordered: r.cfg.ordered(),
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
	r.deliver(rn, token, msgs)
	return len(msgs), nil
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
		for !rn.stopping() {
			n, err := ret.DeleteDelivered(rn.ctx, r.cfg.RetainDelivered, batch)
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

// schemaCheckTimeout bounds Start's schema check: a store slow to answer is not waited for (its
// claims will tell), one that answers says within this time whether its table is missing.
const schemaCheckTimeout = time.Second

// checkSchema returns the store's ErrSchema error, if it reports one within schemaCheckTimeout.
func (r *Relay) checkSchema(ctx context.Context) error {
	sc, ok := r.store.(SchemaChecker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, schemaCheckTimeout)
	defer cancel()
	err := sc.CheckSchema(ctx)
	if errors.Is(err, ErrSchema) {
		return err
	}
	if err != nil {
		r.log.Warn("could not check the store's schema; starting anyway", zap.Error(err))
	}
	return nil
}
