// Package dedup stops a lost acknowledgement from becoming a duplicate. When a relay publishes a
// message but its ack never reaches the store, the message's lease expires and a relay publishes
// it again. The dedup middleware remembers the IDs it saw published and, when one comes back
// within TTL, skips it and reports it as published, so the relay acks it instead.
//
// Dedup never causes a loss: an ID is recorded only after its publish succeeded, and when the
// Store cannot be read the batch is published anyway (a possible duplicate beats a lost message).
// It narrows the duplicate window; consumers that must never see a duplicate still dedupe by ID.
package dedup

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// Config tunes the dedup middleware. The zero value of every field except Store means its
// documented default.
type Config struct {
	// Store remembers published IDs. Required: a MemoryStore for one relay process, a RedisStore
	// when several relays share an outbox.
	Store Store
	// TTL is how long a published ID is remembered. It must outlast the relay's Lease, which is
	// how long a message with a lost ack waits before it is published again. Default 10m.
	TTL time.Duration
	// Timeout bounds each Store call, so a slow store delays a batch by at most this. Default 1s.
	Timeout time.Duration
	// Logger receives store failures (warnings) and skipped messages (debug). Default zap.NewNop().
	Logger *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = 10 * time.Minute
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "dedup", Field: field, Problem: problem}
	}
	switch {
	case c.Store == nil:
		return bad("Store", "is nil")
	case c.TTL < 0:
		return bad("TTL", "is negative")
	case c.TTL > 0 && c.TTL < time.Second:
		return bad("TTL", "is below 1s; it must outlast the relay's Lease")
	case c.Timeout < 0:
		return bad("Timeout", "is negative")
	}
	return nil
}

// Middleware returns the dedup middleware, or the error Validate reports.
func (c Config) Middleware() (outbox.Middleware, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	c.Logger = c.Logger.Named("outbox.dedup")
	return func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			return c.publish(ctx, next, msgs)
		}
	}, nil
}

func (c Config) publish(ctx context.Context, next outbox.Handler, msgs []*outbox.Message) error {
	if len(msgs) == 0 {
		return next(ctx, msgs)
	}
	fresh := c.unseen(ctx, msgs)
	if len(fresh) == 0 {
		return nil
	}
	err := next(ctx, fresh)
	c.mark(ctx, fresh, err)
	if err != nil && len(fresh) < len(msgs) {
		return perMessage(fresh, err)
	}
	return err
}

// unseen returns the messages not published before. When the store fails it returns them all.
func (c Config) unseen(ctx context.Context, msgs []*outbox.Message) []*outbox.Message {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	lookupCtx, cancel := context.WithTimeout(ctx, c.Timeout)
	seen, err := c.Store.Seen(lookupCtx, ids)
	cancel()
	if err != nil {
		c.Logger.Warn("dedup lookup failed; publishing the batch anyway", zap.Int("batch", len(msgs)), zap.Error(err))
		return msgs
	}
	if len(seen) == 0 {
		return msgs
	}
	fresh := make([]*outbox.Message, 0, len(msgs)-len(seen))
	for _, m := range msgs {
		if seen[m.ID] {
			c.Logger.Debug("skipping a message published before", zap.String("id", m.ID), zap.String("type", m.Type), zap.String("key", m.Key))
			continue
		}
		fresh = append(fresh, m)
	}
	return fresh
}

// mark records the messages of sent that were published.
func (c Config) mark(ctx context.Context, sent []*outbox.Message, err error) {
	var be *outbox.BatchError
	if err != nil && !errors.As(err, &be) {
		return
	}
	ids := make([]string, 0, len(sent))
	for _, m := range sent {
		if be == nil || be.Failed[m.ID] == nil {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	// The publish happened: record it even when the relay is being stopped, or the next relay
	// publishes the batch again.
	markCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.Timeout)
	defer cancel()
	if err := c.Store.Mark(markCtx, ids, c.TTL); err != nil {
		c.Logger.Warn("dedup could not record a publish; a redelivery of these messages will not be skipped", zap.Int("messages", len(ids)), zap.Error(err))
	}
}

// perMessage turns a whole-batch error into one failure per message of sent, so that the
// skipped messages, absent from it, are acknowledged.
func perMessage(sent []*outbox.Message, err error) error {
	var be *outbox.BatchError
	if errors.As(err, &be) {
		return err
	}
	out := outbox.NewBatchError()
	for _, m := range sent {
		out.Add(m.ID, err)
	}
	return out
}
