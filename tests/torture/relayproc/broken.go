package main

import (
	"context"
	"errors"
	"time"

	"github.com/txoutbox/outbox"
)

// ackFirstStore is a deliberately broken relay store for the torture suite's control scenario:
// it acknowledges every batch as soon as it is claimed, before it is published — the classic
// outbox bug of marking events processed and then sending them. A publish that then fails (or
// a kill before it) loses its events for good. The control scenario runs it to prove that the
// checker catches a loss rather than passing whatever happens.
type ackFirstStore struct {
	outbox.Store
}

func (s ackFirstStore) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	msgs, err := s.Store.Claim(ctx, req)
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if _, err := s.Store.Ack(ctx, req.Token, ids); err != nil {
		return nil, err
	}
	return msgs, nil
}

// Listen keeps the wrapped store's notifications.
func (s ackFirstStore) Listen(ctx context.Context) (<-chan struct{}, error) {
	if n, ok := s.Store.(outbox.Notifier); ok {
		return n.Listen(ctx)
	}
	return nil, errors.New("relayproc: store has no notifier")
}

// twiceTransport is deliberately broken: it publishes every batch twice, so each message is
// duplicated although its relay settled it in time. The control scenario expects the checker's
// duplicate check (the journals) to catch it.
type twiceTransport struct{ outbox.Transport }

func (t twiceTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if err := t.Transport.Publish(ctx, msgs); err != nil {
		return err
	}
	return t.Transport.Publish(ctx, msgs)
}

// reverseTransport is deliberately broken: it publishes each batch in reverse order, so a
// relay that claims several messages of one key at once (not in ordered mode) sends them last
// first. The control scenario expects the checker's order check to catch it.
type reverseTransport struct{ outbox.Transport }

func (t reverseTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	reversed := make([]*outbox.Message, len(msgs))
	for i, m := range msgs {
		reversed[len(msgs)-1-i] = m
	}
	return t.Transport.Publish(ctx, reversed)
}

// shortLeaseStore is deliberately broken: its claims lease messages for a millisecond instead
// of the configured lease, so other relays claim what this one is still publishing. The
// control scenario expects the checker's exclusive-claim check (the journals, which assume the
// configured lease) to catch it.
type shortLeaseStore struct{ outbox.Store }

func (s shortLeaseStore) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	req.Lease = time.Millisecond
	return s.Store.Claim(ctx, req)
}

// Listen keeps the wrapped store's notifications.
func (s shortLeaseStore) Listen(ctx context.Context) (<-chan struct{}, error) {
	if n, ok := s.Store.(outbox.Notifier); ok {
		return n.Listen(ctx)
	}
	return nil, errors.New("relayproc: store has no notifier")
}

// delayTransport is deliberately broken: it waits before every publish, so a relay that
// acknowledges before publishing (AckBeforePublish) has acknowledged batches in flight most of
// the time. The WAL control lane expects the checks of the slot's confirmed position to catch
// what that relay lets the slot confirm.
type delayTransport struct {
	outbox.Transport
	delay time.Duration
}

func (t delayTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(t.delay):
	}
	return t.Transport.Publish(ctx, msgs)
}
