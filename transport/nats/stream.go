package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
)

// CheckStream verifies, for a transport with Stream set, that the stream exists and that its
// duplicate window covers horizon: the longest time the relay may take to republish a message
// whose PubAck was lost (its Lease, or PublishTimeout plus Backoff.Max, whichever is longer; see
// the package documentation). A deployment calls it at start, so a window too short to drop
// the relay's republishes is found before it lets duplicates through. A missing stream is an
// error marked outbox.Unavailable, as it is for Publish.
func (t *Transport) CheckStream(ctx context.Context, horizon time.Duration) error {
	if t.cfg.Stream == "" {
		return errors.New("nats: check stream: Stream is not set in the Config, so the transport does not know the stream its messages land in")
	}
	s, err := t.js.Stream(ctx, t.cfg.Stream)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return outbox.Unavailable(fmt.Errorf("nats: check stream %s: the stream does not exist: %w", t.cfg.Stream, err))
		}
		return fmt.Errorf("nats: check stream %s: %w", t.cfg.Stream, err)
	}
	window := s.CachedInfo().Config.Duplicates
	if window < horizon {
		return fmt.Errorf("nats: check stream %s: its duplicate window (%v) is shorter than the relay's retry horizon (%v): a message republished later than the window after a lost PubAck is stored twice; raise the stream's Duplicates, or lower the relay's Backoff.Max", t.cfg.Stream, window, horizon)
	}
	return nil
}
