// Package retry retries transient publish failures inside one relay cycle, before the relay
// records them as failed. A short blip (a throttled request, a dropped connection) then costs
// milliseconds instead of a nack and a backoff measured in seconds.
//
// Only what failed is retried: when the transport reports a *outbox.BatchError, the next attempt
// publishes just the messages it names, and the error returned at the end names only those that
// still failed. Errors marked with outbox.Permanent are never retried, and neither are those marked
// outbox.Unavailable: an outage of the broker is the relay's to handle (it pauses and probes,
// charging no attempt), and retrying into it only holds the batch.
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/outbox"
)

// Config tunes the retry middleware. The zero value of every field means its documented default.
type Config struct {
	// MaxRetries is how many times a failed publish is retried after the first attempt.
	// Default 3; negative means none (the middleware then only passes calls through).
	MaxRetries int
	// Backoff spaces the retries. Default Initial 100ms, Max 2s, Multiplier 2, Jitter 0.2: short,
	// because the relay's own backoff takes over once these retries are spent.
	Backoff outbox.Backoff
}

func (c Config) withDefaults() Config {
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.Backoff.Initial == 0 {
		c.Backoff.Initial = 100 * time.Millisecond
	}
	if c.Backoff.Max == 0 {
		c.Backoff.Max = 2 * time.Second
	}
	if c.Backoff.Max < c.Backoff.Initial {
		c.Backoff.Max = c.Backoff.Initial
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "retry", Field: field, Problem: problem}
	}
	if c.MaxRetries > 100 {
		return bad("MaxRetries", "is above 100; use the relay's MaxAttempts for long retry sequences")
	}
	return c.Backoff.Validate("retry", "Backoff")
}

// Middleware returns the retry middleware, or the error Validate reports.
func (c Config) Middleware() (outbox.Middleware, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	return func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			return c.publish(ctx, next, msgs)
		}
	}, nil
}

// publish calls next until every message is published, a failure is permanent, the retries are
// spent or ctx cannot wait for the next one.
func (c Config) publish(ctx context.Context, next outbox.Handler, msgs []*outbox.Message) error {
	err := next(ctx, msgs)
	if err == nil || c.MaxRetries == 0 {
		return err
	}
	st := newState(msgs)
	st.record(msgs, err)
	for retry := 1; retry <= c.MaxRetries; retry++ {
		pending := st.retryable(msgs)
		if len(pending) == 0 || !wait(ctx, c.Backoff.Delay(retry)) {
			break
		}
		st.record(pending, next(ctx, pending))
	}
	return st.result(len(msgs))
}

// wait sleeps d, or reports false at once when ctx ends first or would end before d passes: a
// retry that cannot happen in time is better left to the relay, which has not given up yet.
func wait(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// state is what still failed after the attempts so far.
type state struct {
	failed map[string]error
	// whole is the last error when every attempt so far failed the whole batch; it is returned
	// as is, so callers see the transport's own error rather than one BatchError entry per message.
	whole error
}

func newState(msgs []*outbox.Message) *state {
	return &state{failed: make(map[string]error, len(msgs))}
}

// record merges the outcome of publishing sent.
func (s *state) record(sent []*outbox.Message, err error) {
	var be *outbox.BatchError
	partial := errors.As(err, &be)
	if err == nil || partial {
		s.whole = nil
	} else if len(s.failed) == 0 || s.whole != nil {
		s.whole = err
	}
	for _, m := range sent {
		cause := err
		if partial {
			cause = be.Failed[m.ID]
		}
		if cause == nil {
			delete(s.failed, m.ID)
		} else {
			s.failed[m.ID] = cause
		}
	}
}

// retryable returns the messages whose last failure was neither permanent nor an outage, in
// batch order.
func (s *state) retryable(msgs []*outbox.Message) []*outbox.Message {
	var out []*outbox.Message
	for _, m := range msgs {
		if err, ok := s.failed[m.ID]; ok && !outbox.IsPermanent(err) && !outbox.IsUnavailable(err) {
			out = append(out, m)
		}
	}
	return out
}

func (s *state) result(batch int) error {
	switch {
	case len(s.failed) == 0:
		return nil
	case s.whole != nil && len(s.failed) == batch:
		return s.whole
	}
	be := outbox.NewBatchError()
	for id, err := range s.failed {
		be.Add(id, err)
	}
	return be
}
