package nats

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// Transport publishes outbox messages to NATS JetStream and waits for the PubAck of each. It is
// safe for concurrent use.
//
// It never retries: nats.go's retry of a publish that found no responders is switched off, a
// missing PubAck fails its message after AckTimeout, and retrying is left to the relay's
// backoff and middleware/retry.
type Transport struct {
	cfg    Config
	nc     *natsgo.Conn
	ownNC  bool // New made nc, so Close closes it
	js     jetstream.JetStream
	router *router
	// slots bounds the PubAcks awaited: taken before each publish, given back by the JetStream
	// ack and error handlers, which nats.go calls exactly once for every publish it accepted
	// (acked, failed, timed out, or reset by a reconnect).
	slots chan struct{}

	mu   sync.RWMutex  // Publish holds it shared; Close exclusively, once publishes returned
	done chan struct{} // closed by Close: waits end at once
	once sync.Once

	published  atomic.Int64
	duplicates atomic.Int64
}

// publishOpts switches off nats.go's own retry of a publish that found no responders: retrying
// is the relay's. Built once: an option is a closure, allocated at every call otherwise.
var publishOpts = []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}

// Stats counts what a Transport published since New.
type Stats struct {
	// Published counts messages whose PubAck came, duplicates included.
	Published int64
	// Duplicates counts PubAcks that reported a duplicate: the stream already held a message
	// with this ID (Nats-Msg-Id) within its duplicate window, and kept only the first. They are
	// successes: the message is in the stream once.
	Duplicates int64
}

// New validates cfg, connects (unless cfg has a Conn) and returns a Transport. A server that
// cannot be reached or refuses the credentials makes New fail with an error marked
// outbox.Unavailable, without secrets in its text.
func New(ctx context.Context, cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := &Transport{
		cfg:    cfg,
		nc:     cfg.Conn,
		router: newRouter(cfg),
		slots:  make(chan struct{}, cfg.MaxPending),
		done:   make(chan struct{}),
	}
	if t.nc == nil {
		nc, err := connect(ctx, cfg.Connection, cfg.Logger)
		if err != nil {
			return nil, err
		}
		t.nc, t.ownNC = nc, true
	}
	if t.nc.IsConnected() && !t.nc.HeadersSupported() {
		t.closeConn()
		return nil, errors.New("nats: connect: the server does not support headers (JetStream deduplication needs nats-server 2.2 or later)")
	}
	js, err := jetstream.New(t.nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *natsgo.Msg, *jetstream.PubAck) { t.release() }),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *natsgo.Msg, error) { t.release() }),
	)
	if err != nil {
		t.closeConn()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	t.js = js
	return t, nil
}

// Conn returns the connection the transport publishes on.
func (t *Transport) Conn() *natsgo.Conn { return t.nc }

// Stats returns what the transport published so far.
func (t *Transport) Stats() Stats {
	return Stats{Published: t.published.Load(), Duplicates: t.duplicates.Load()}
}

// KeepsKeyOrder implements outbox.KeyOrderer: true when Config.KeepKeyOrder is set.
func (t *Transport) KeepsKeyOrder() bool { return t.cfg.KeepKeyOrder }

// String describes the transport without secrets.
func (t *Transport) String() string { return fmt.Sprintf("nats.Transport(%v)", t.cfg) }

// Close makes further publishes fail with outbox.ErrClosed, ends the waits of publishes in
// flight (their unacknowledged messages fail: the stream may still store them, and their
// duplicate window drops the republish), and closes the connection New made. A Conn you
// passed stays open, and keeps the PubAck subscription until you close it.
//
// Close does not call JetStream's CleanupPublisher: in nats.go v1.55 it can race with the
// start of the publisher's reconnect watcher and leave that goroutine blocked forever.
// Closing the connection ends the watcher instead.
func (t *Transport) Close() error {
	t.once.Do(func() {
		close(t.done)
		t.mu.Lock() // every Publish has returned
		defer t.mu.Unlock()
		t.closeConn()
	})
	return nil
}

func (t *Transport) closeConn() {
	if t.ownNC {
		t.nc.Close()
	}
}

func (t *Transport) closed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// acquire takes a slot for one publish, waiting while MaxPending PubAcks are outstanding.
func (t *Transport) acquire(ctx context.Context) error {
	select {
	case t.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats: publish: %w", ctx.Err())
	case <-t.done:
		return fmt.Errorf("nats: publish: %w", outbox.ErrClosed)
	}
}

func (t *Transport) release() {
	select {
	case <-t.slots:
	default: // unreachable: every release follows an acquire
	}
}

// acked records a PubAck.
func (t *Transport) acked(m *outbox.Message, ack *jetstream.PubAck) {
	t.published.Add(1)
	if ack.Duplicate {
		t.duplicates.Add(1)
		t.cfg.Logger.Debug("nats: the stream already held this message: dropped as a duplicate",
			zap.String("id", m.ID), zap.String("stream", ack.Stream), zap.Uint64("seq", ack.Sequence))
	}
}
