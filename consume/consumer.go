package consume

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// errEarlier is the cause given to the deliveries of a run behind one that was not handled.
var errEarlier = errors.New("consume: an earlier message of its group was not handled")

const (
	stateNew = iota
	stateStarted
	stateStopped
)

// Consumer runs a Handler over the deliveries of an Adapter. It implements outbox.Consumer.
// A transport's consumer embeds it, so Start, Stop, Run and Stats are the runtime's.
type Consumer struct {
	a     Adapter
	cfg   Config
	log   *zap.Logger
	slots chan struct{} // one per handler running or reserved by a poller

	mu       sync.Mutex
	state    int
	stopPoll context.CancelFunc
	work     context.Context // the handlers' parent, cancelled when Stop's deadline passes
	stopWork context.CancelFunc
	pollers  sync.WaitGroup
	runs     sync.WaitGroup
	polled   chan struct{} // closed when every poller returned
	done     chan struct{} // closed when every poller and run returned
	groups   map[string]*link
	live     map[*tracked]struct{} // received, not settled yet
	seq      uint64
	stopOnce sync.Once
	closed   sync.Once
	closeErr error
	stats    counters
}

type counters struct {
	received, handled, failed, malformed, acked, ackErrors, requeued, rejected, settleErrors,
	extended, extendErrors, receiveErrors, inFlight atomic.Int64
}

// Stats is a snapshot of a consumer's counters since it was made.
type Stats struct {
	// Received counts deliveries received (redeliveries included).
	Received int64
	// Handled counts handler calls that returned nil; Failed those that returned an error,
	// panicked or timed out.
	Handled, Failed int64
	// Malformed counts deliveries that could not be decoded (they were rejected).
	Malformed int64
	// Acked counts successful acks (deletes, commits recorded); AckErrors the failed ones,
	// whose messages the broker delivers again.
	Acked, AckErrors int64
	// Requeued counts deliveries given back with Nack: failed handlers, and deliveries handed
	// back unhandled by a stop or an earlier failure of their group.
	Requeued int64
	// Rejected counts deliveries rejected: malformed, or exhausted by MaxDeliveries.
	Rejected int64
	// SettleErrors counts Nack and Reject calls that failed.
	SettleErrors int64
	// Extended counts extensions of running handlers' deliveries; ExtendErrors the failed ones.
	Extended, ExtendErrors int64
	// ReceiveErrors counts failed Receive calls.
	ReceiveErrors int64
	// InFlight is how many deliveries are being handled now.
	InFlight int64
}

// New returns a consumer of a's deliveries. It calls nothing of a; Start opens it.
func New(a Adapter, cfg Config) (*Consumer, error) {
	if a == nil {
		return nil, &outbox.ConfigError{Component: cfg.withDefaults().Name, Field: "adapter", Problem: "is nil"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Consumer{
		a: a, cfg: cfg, log: cfg.Logger.With(zap.String("component", cfg.Name)),
		slots: make(chan struct{}, cfg.Concurrency), polled: make(chan struct{}), done: make(chan struct{}),
		groups: map[string]*link{}, live: map[*tracked]struct{}{},
	}, nil
}

// Config returns the consumer's configuration with its defaults filled in.
func (c *Consumer) Config() Config { return c.cfg }

// Start opens the adapter and starts receiving in the background; it does not block on
// messages. ctx bounds only the opening. When Open fails, Start may be called again.
// Start on a consumer started or stopped before returns outbox.ErrConsumerStarted.
func (c *Consumer) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateNew {
		return outbox.ErrConsumerStarted
	}
	if err := c.a.Open(ctx); err != nil {
		return fmt.Errorf("%s: start: %w", c.cfg.Name, err)
	}
	c.state = stateStarted
	pollCtx, stopPoll := context.WithCancel(context.Background())
	c.work, c.stopWork = context.WithCancel(context.Background())
	c.stopPoll = stopPoll
	for range c.cfg.Pollers {
		c.pollers.Add(1)
		go c.poll(pollCtx)
	}
	go func() {
		c.pollers.Wait()
		close(c.polled)
		c.runs.Wait() // every run was added by a poller before it returned
		close(c.done)
	}()
	c.log.Info("consuming", zap.Int("concurrency", c.cfg.Concurrency), zap.Int("pollers", c.cfg.Pollers))
	return nil
}

// Stop stops receiving and waits for the handlers in flight and their settling. When ctx
// ends first, it cancels the handlers' contexts (their deliveries are given back with Nack),
// waits StopGrace more, gives back the deliveries of handlers still running, closes the adapter
// so the broker redelivers what it holds, and returns ctx's error; a later Stop waits for the
// handlers again. Stop on a consumer never started closes the adapter and returns nil.
func (c *Consumer) Stop(ctx context.Context) error {
	c.mu.Lock()
	state := c.state
	c.state = stateStopped
	c.mu.Unlock()
	if state == stateNew {
		return c.close(ctx)
	}
	if c.stopPoll == nil {
		return nil // stopped before it was ever started
	}
	c.stopOnce.Do(func() {
		c.stopPoll()
		c.log.Info("stopping")
	})
	select {
	case <-c.done:
		c.stopWork() // nothing runs under it any more; release the context
		return c.close(ctx)
	case <-ctx.Done():
	}
	c.stopWork()
	grace := time.NewTimer(c.cfg.StopGrace)
	defer grace.Stop()
	select {
	case <-c.done:
	case <-grace.C:
		select {
		case <-c.polled:
		case <-time.After(c.cfg.StopGrace):
		}
		c.abandon()
	}
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.SettleTimeout)
	defer cancel()
	_ = c.close(closeCtx)
	return fmt.Errorf("%s: stop: handlers still running: %w", c.cfg.Name, ctx.Err())
}

// Run starts the consumer, consumes until ctx ends, then stops it, waiting up to StopTimeout
// for the handlers in flight. It returns nil after a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), c.cfg.StopTimeout)
	defer cancel()
	return c.Stop(stopCtx)
}

// Stats returns a snapshot of the counters.
func (c *Consumer) Stats() Stats {
	s := &c.stats
	return Stats{
		Received: s.received.Load(), Handled: s.handled.Load(), Failed: s.failed.Load(), Malformed: s.malformed.Load(),
		Acked: s.acked.Load(), AckErrors: s.ackErrors.Load(), Requeued: s.requeued.Load(), Rejected: s.rejected.Load(),
		SettleErrors: s.settleErrors.Load(), Extended: s.extended.Load(), ExtendErrors: s.extendErrors.Load(),
		ReceiveErrors: s.receiveErrors.Load(), InFlight: s.inFlight.Load(),
	}
}

func (c *Consumer) close(ctx context.Context) error {
	c.closed.Do(func() {
		if err := c.a.Close(ctx); err != nil {
			c.closeErr = fmt.Errorf("%s: close: %w", c.cfg.Name, err)
		}
	})
	return c.closeErr
}

// abandon gives back, in the order received, every delivery not settled yet: Stop's deadline
// and grace passed while their handlers still run.
func (c *Consumer) abandon() {
	c.mu.Lock()
	left := make([]*tracked, 0, len(c.live))
	for t := range c.live {
		left = append(left, t)
	}
	c.mu.Unlock()
	slices.SortFunc(left, func(a, b *tracked) int { return cmp.Compare(a.seq, b.seq) })
	if len(left) > 0 {
		c.log.Warn("handlers still running after the stop's deadline; their deliveries are given back", zap.Int("deliveries", len(left)))
	}
	for _, t := range left {
		c.nack(t, 0, ErrStopped)
	}
}

// poll receives while ctx lasts, never more deliveries than there are free handler slots.
func (c *Consumer) poll(ctx context.Context) {
	defer c.pollers.Done()
	backoff := time.Duration(0)
	for {
		select {
		case c.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	reserve:
		for n < c.cfg.ReceiveBatch {
			select {
			case c.slots <- struct{}{}:
				n++
			default:
				break reserve
			}
		}
		ds, err := c.a.Receive(ctx, n)
		for range len(ds) - n {
			c.slots <- struct{}{} // an adapter that returned more than asked: wait for room
		}
		c.freeSlots(n - len(ds))
		if len(ds) > 0 {
			c.dispatch(ds)
		}
		if err == nil {
			backoff = 0
			continue
		}
		if ctx.Err() != nil {
			return
		}
		c.stats.receiveErrors.Add(1)
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		c.log.Warn("receive failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
	}
}

func (c *Consumer) freeSlots(n int) {
	for range n {
		<-c.slots
	}
}

// tracked is a delivery the runtime holds; mu serialises its settling with its extensions.
type tracked struct {
	d       Delivery
	seq     uint64
	mu      sync.Mutex
	settled bool
}

// link chains the runs of one group: a run waits for the one before it.
type link struct {
	done  chan struct{}
	cause error // why the run ended early, nil when it was handled; set before done is closed
}

// dispatch splits ds into runs (one per group, in the order received; one per delivery without
// a group) and starts each.
func (c *Consumer) dispatch(ds []Delivery) {
	c.stats.received.Add(int64(len(ds)))
	var runs [][]*tracked
	index := map[string]int{}
	c.mu.Lock()
	for _, d := range ds {
		c.seq++
		t := &tracked{d: d, seq: c.seq}
		c.live[t] = struct{}{}
		i, ok := index[d.Group]
		if !ok || d.Group == "" {
			i = len(runs)
			index[d.Group] = i
			runs = append(runs, nil)
		}
		runs[i] = append(runs[i], t)
	}
	for _, run := range runs {
		var prev, next *link
		if g := run[0].d.Group; g != "" {
			prev, next = c.groups[g], &link{done: make(chan struct{})}
			c.groups[g] = next
		}
		c.runs.Add(1)
		go c.run(run, prev, next)
	}
	c.mu.Unlock()
}

// run handles a run in order, stopping at the first delivery not handled: the rest of it are
// given back so that none overtakes it. Each delivery's slot is freed when it is done.
func (c *Consumer) run(run []*tracked, prev, next *link) {
	defer c.runs.Done()
	var cause error
	if prev != nil {
		<-prev.done
		switch {
		case errors.Is(prev.cause, ErrStopped):
			cause = fmt.Errorf("%w: %w", ErrStopped, errEarlier)
		case prev.cause != nil:
			cause = errEarlier
		}
	}
	for _, t := range run {
		if cause == nil {
			cause = c.process(t)
		} else {
			c.nack(t, 0, cause)
		}
		<-c.slots
	}
	if next != nil {
		next.cause = cause
		close(next.done)
		c.mu.Lock()
		if g := run[0].d.Group; c.groups[g] == next {
			delete(c.groups, g)
		}
		c.mu.Unlock()
	}
}

// process handles one delivery and settles it; it returns nil when the handler succeeded.
func (c *Consumer) process(t *tracked) error {
	c.stats.inFlight.Add(1)
	defer c.stats.inFlight.Add(-1)
	log := c.log
	if t.d.Ref != "" {
		log = log.With(zap.String("ref", t.d.Ref))
	}
	if t.d.Attempt > 0 {
		log = log.With(zap.Int("attempt", t.d.Attempt))
	}
	msg, err := Decode(t.d, c.cfg.RawPayload)
	if err != nil {
		err = fmt.Errorf("%s: %w", c.cfg.Name, err)
		c.stats.malformed.Add(1)
		log.Error("malformed delivery rejected", zap.Error(err))
		c.reject(t, err, log)
		return err
	}
	log = log.With(zap.String("id", msg.ID), zap.String("type", msg.Type))
	if c.work.Err() != nil {
		c.nack(t, 0, ErrStopped)
		return ErrStopped
	}

	hctx, cancel := context.WithCancel(c.work)
	if c.cfg.HandlerTimeout > 0 {
		hctx, cancel = context.WithTimeout(c.work, c.cfg.HandlerTimeout)
	}
	if t.d.Context != nil {
		defer context.AfterFunc(t.d.Context, cancel)()
	}
	stopExtending := c.extend(t, log)
	err = c.call(hctx, msg)
	stopExtending()
	cancel()
	if err != nil {
		c.stats.failed.Add(1)
		attempt := max(t.d.Attempt, 1)
		switch {
		case c.work.Err() != nil:
			// Stop cancelled the handler: the message did not fail, the consumer stopped, so
			// even a last delivery is given back rather than rejected.
			log.Warn("handler stopped; the delivery is given back", zap.Error(err))
			err = fmt.Errorf("%w: %w", ErrStopped, err) // the rest of its run is given back as stopped too
			c.nack(t, 0, err)
		case c.cfg.MaxDeliveries > 0 && t.d.Attempt >= c.cfg.MaxDeliveries:
			log.Error("handler failed on its last delivery; rejected", zap.Error(err))
			c.reject(t, err, log)
		default:
			delay := c.cfg.Backoff.Delay(attempt)
			log.Warn("handler failed; the delivery is given back", zap.Error(err), zap.Duration("delay", delay))
			c.nack(t, delay, err)
		}
		return err
	}
	c.stats.handled.Add(1)
	if ok, err := c.settle(t, t.d.Settler.Ack); !ok {
		return nil // given back by Stop meanwhile
	} else if err != nil {
		c.stats.ackErrors.Add(1)
		log.Warn("ack failed; the message will be delivered again", zap.Error(err))
		return nil
	}
	c.stats.acked.Add(1)
	log.Debug("handled")
	return nil
}

// call runs the handler, turning a panic into an error so one bad message cannot stop the
// consumer.
func (c *Consumer) call(ctx context.Context, m *outbox.Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: handler panicked: %v", c.cfg.Name, r)
		}
	}()
	return c.cfg.Handler(ctx, m)
}

// settle runs fn under its own timeout unless t was settled before; ok reports that it ran.
func (c *Consumer) settle(t *tracked, fn func(ctx context.Context) error) (ok bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.settled {
		return false, nil
	}
	t.settled = true
	c.mu.Lock()
	delete(c.live, t)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.SettleTimeout)
	defer cancel()
	return true, fn(ctx)
}

func (c *Consumer) nack(t *tracked, delay time.Duration, cause error) {
	ok, err := c.settle(t, func(ctx context.Context) error { return t.d.Settler.Nack(ctx, delay, cause) })
	switch {
	case !ok:
	case err != nil:
		c.stats.settleErrors.Add(1)
		c.log.Warn("nack failed; the broker delivers the message again when its lease ends", zap.String("ref", t.d.Ref), zap.Error(err))
	default:
		c.stats.requeued.Add(1)
	}
}

func (c *Consumer) reject(t *tracked, cause error, log *zap.Logger) {
	ok, err := c.settle(t, func(ctx context.Context) error { return t.d.Settler.Reject(ctx, cause) })
	switch {
	case !ok:
	case err != nil:
		c.stats.settleErrors.Add(1)
		log.Warn("reject failed", zap.Error(err))
	default:
		c.stats.rejected.Add(1)
	}
}

// extend extends t every ExtendInterval while its handler runs, until the returned func is
// called.
func (c *Consumer) extend(t *tracked, log *zap.Logger) (stop func()) {
	ext, ok := t.d.Settler.(Extender)
	if !ok || c.cfg.ExtendInterval <= 0 {
		return func() {}
	}
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(c.cfg.ExtendInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			t.mu.Lock()
			if t.settled {
				t.mu.Unlock()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(c.cfg.ExtendInterval, c.cfg.SettleTimeout))
			err := ext.Extend(ctx)
			cancel()
			t.mu.Unlock()
			if err != nil {
				c.stats.extendErrors.Add(1)
				log.Warn("extending failed", zap.Error(err))
				continue
			}
			c.stats.extended.Add(1)
		}
	}()
	return func() {
		close(quit)
		<-exited
	}
}
