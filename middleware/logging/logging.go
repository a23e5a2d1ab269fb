// Package logging writes what happens on the publish path to a zap logger: one debug line per
// batch, a warning per failed message, and an error per message the relay will dead-letter.
// Failure lines carry the message's id, type, key, attempt and error; payloads stay out of logs
// unless IncludePayload asks for them, because events often hold personal data.
//
// The relay itself logs one warning per failed batch and an error per dead letter; this
// middleware adds the per-message detail (and the debug batch lines) where they are wanted.
package logging

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"go.uber.org/zap"
)

// Config tunes the logging middleware. The zero value of every field except Logger means its
// documented default.
type Config struct {
	// Logger receives the lines, under the name "outbox.publish". Required.
	Logger *zap.Logger
	// IncludePayload adds each failed message's payload to its line. Default false.
	IncludePayload bool
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "logging", Field: field, Problem: problem}
	}
	if c.Logger == nil {
		return bad("Logger", "is nil")
	}
	return nil
}

// Middleware returns the logging middleware, or the error Validate reports.
func (c Config) Middleware() (outbox.Middleware, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	log := c.Logger.Named("outbox.publish")
	return func(next outbox.Handler) outbox.Handler {
		return func(ctx context.Context, msgs []*outbox.Message) error {
			start := time.Now()
			err := next(ctx, msgs)
			c.log(ctx, log, msgs, err, time.Since(start))
			return err
		}
	}, nil
}

func (c Config) log(ctx context.Context, log *zap.Logger, msgs []*outbox.Message, err error, took time.Duration) {
	var be *outbox.BatchError
	partial := errors.As(err, &be)
	failed := 0
	for _, m := range msgs {
		cause := err
		if partial {
			cause = be.Failed[m.ID]
		}
		if cause == nil {
			continue
		}
		failed++
		attempt := m.Attempts + 1
		fields := []zap.Field{
			zap.String("id", m.ID), zap.String("type", m.Type), zap.String("key", m.Key),
			zap.Int("attempt", attempt), zap.Error(cause),
		}
		if c.IncludePayload {
			fields = append(fields, zap.String("payload", string(m.Payload)))
		}
		if backend.FailureIsFinal(ctx, m, cause) {
			log.Error("message will be dead-lettered", append(fields, zap.Bool("permanent", outbox.IsPermanent(cause)))...)
		} else {
			log.Warn("message publish failed; it will be retried", fields...)
		}
	}
	msg := "batch published"
	if failed > 0 {
		msg = "batch publish failed"
	}
	if ce := log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.Int("batch", len(msgs)), zap.Int("published", len(msgs)-failed), zap.Int("failed", failed), zap.Duration("took", took))
	}
}
