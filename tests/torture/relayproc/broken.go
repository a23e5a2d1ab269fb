package main

import (
	"context"
	"errors"

	"github.com/txoutbox/outbox/core"
)

// ackFirstStore is a deliberately broken relay store for the torture suite's control scenario:
// it acknowledges every batch as soon as it is claimed, before it is published — the classic
// outbox bug of marking events processed and then sending them. A publish that then fails (or
// a kill before it) loses its events for good. The control scenario runs it to prove that the
// checker catches a loss rather than passing whatever happens.
type ackFirstStore struct {
	core.Store
}

func (s *ackFirstStore) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	msgs, err := s.Store.Claim(ctx, req)
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if err := s.Store.Ack(ctx, req.Owner, ids); err != nil {
		return nil, err
	}
	return msgs, nil
}

// Listen keeps the wrapped store's notifications.
func (s *ackFirstStore) Listen(ctx context.Context) (<-chan struct{}, error) {
	if n, ok := s.Store.(core.Notifier); ok {
		return n.Listen(ctx)
	}
	return nil, errors.New("relayproc: store has no notifier")
}

// twiceTransport is deliberately broken: it publishes every batch twice, so each message is
// duplicated although its relay settled it in time. The control scenario expects the checker's
// duplicate check (the journals) to catch it.
type twiceTransport struct{ core.Transport }

func (t twiceTransport) Publish(ctx context.Context, msgs []*core.Message) error {
	if err := t.Transport.Publish(ctx, msgs); err != nil {
		return err
	}
	return t.Transport.Publish(ctx, msgs)
}

// reverseTransport is deliberately broken: it publishes each batch in reverse order, so a
// relay that claims several messages of one key at once (not in ordered mode) sends them last
// first. The control scenario expects the checker's order check to catch it.
type reverseTransport struct{ core.Transport }

func (t reverseTransport) Publish(ctx context.Context, msgs []*core.Message) error {
	reversed := make([]*core.Message, len(msgs))
	for i, m := range msgs {
		reversed[len(msgs)-1-i] = m
	}
	return t.Transport.Publish(ctx, reversed)
}
