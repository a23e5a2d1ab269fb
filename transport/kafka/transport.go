package kafka

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/txoutbox/outbox"
)

// Transport publishes outbox messages to Kafka. It is safe for concurrent use.
//
// It never retries a failed message: retrying is the relay's backoff and middleware/retry's
// job. Within DeliveryTimeout the producer does resend a batch whose answer was lost or that
// a broker refused for a passing reason (a leader moving); that resend carries the batch's
// original producer ID and sequence numbers, so the broker writes it at most once and in its
// place. It is part of the idempotent protocol, not a second attempt of a message.
type Transport struct {
	cfg     Config
	router  router
	flusher *flusher
	closed  atomic.Bool
}

var _ outbox.KeyOrderer = (*Transport)(nil)

// New validates cfg and returns a Transport with its producer clients. It does not wait for
// the brokers: the clients connect in the background and on the first publish, so ctx only
// bounds New itself (an ended ctx fails it).
func New(ctx context.Context, cfg Config) (*Transport, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kafka: new: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	f, err := newFlusher(cfg)
	if err != nil {
		return nil, fmt.Errorf("kafka: new client: %w", err)
	}
	return &Transport{cfg: cfg, router: newRouter(cfg), flusher: f}, nil
}

// String describes the transport without secrets.
func (t *Transport) String() string { return fmt.Sprintf("kafka.Transport(%+v)", t.cfg) }

// KeepsKeyOrder reports true: within one Publish the records of a Key reach their partition in
// the order given, and once one of them fails none after it is published (see Publish).
func (t *Transport) KeepsKeyOrder() bool { return true }

// Close makes further publishes fail with outbox.ErrClosed and closes the producer clients.
// Records of publishes still in flight fail (they are reported failed, and so are retried
// later: a record the broker took just before may then be published twice).
func (t *Transport) Close() error {
	if t.closed.Swap(true) {
		return nil
	}
	t.flusher.close()
	return nil
}

// Publish produces msgs and returns when the broker has answered for every record, or when
// ctx ends. It returns nil when every record was written with acks from all in-sync replicas;
// a *outbox.BatchError naming the messages that failed when some did (ctx ending first, or the
// transport closing, included); or, for a call that is wrong as a whole, an error. Errors no
// retry can fix are marked with outbox.Permanent (a record above MaxMessageBytes, a topic name
// Kafka refuses, a message the broker refuses on its own); outages are marked with
// outbox.Unavailable (broker unreachable, no leader, not enough in-sync replicas, a missing
// topic, refused credentials or permissions).
//
// Messages with the same Key go to the same partition (the record key is the Key) in the
// order given. When one of them fails, every later one with that Key in this call fails too,
// and none of them is published: they are reported as held back, retryably. Messages without
// a Key promise no order. When ctx ends first, the records whose outcome is not known yet are
// reported failed; the broker may still write them, so a retry may publish them twice (in
// their order).
func (t *Transport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if t.closed.Load() {
		return fmt.Errorf("kafka: publish: %w", outbox.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafka: publish: %w", err)
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("kafka: publish: message %d is nil", i)
		}
	}
	p := newPublication(t, msgs)
	if p.prepare() {
		p.produce(ctx, t.flusher)
	}
	return p.err()
}
