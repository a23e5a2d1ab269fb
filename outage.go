package outbox

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// outageBackoff spaces the probes of an unavailable transport. Its cap is short so that the
// relay publishes again within a second of the broker's return: a probe lands at most 700 ms
// after it (jitter does not apply at the cap), and the dial it makes has the rest of the
// second. Transports' own reconnect waits stay below the cap (RabbitMQ's is 500 ms), so that
// every probe dials rather than failing inside such a wait.
var outageBackoff = Backoff{Initial: 100 * time.Millisecond, Max: 700 * time.Millisecond, Multiplier: 2, Jitter: 0.2}

// probeBatch bounds the batch that probes an unavailable transport.
const probeBatch = 10

// outage is the relay's view of its transport: up, or down since a time. While it is down the
// relay claims nothing but one probe batch at a time, and charges no attempt for what fails.
type outage struct {
	mu      sync.Mutex
	since   time.Time // zero while the transport is up
	cause   string
	probes  int  // consecutive failed probes
	probing bool // a worker holds the probe
}

// begin records that a publish failed because the transport is unavailable.
func (o *outage) begin(log *zap.Logger, now time.Time, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.since.IsZero() {
		o.probes++
		return
	}
	o.since, o.cause, o.probes = now, err.Error(), 0
	log.Warn("transport unavailable: pausing, probing with small batches; no attempts are charged", zap.Error(err))
}

// end records that the transport published again (or that there is nothing to find out with).
func (o *outage) end(log *zap.Logger, now time.Time, why string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	log.Info("transport available again: resuming", zap.Duration("down_for", now.Sub(o.since)), zap.Int("probes", o.probes+1), zap.String("why", why))
	o.since, o.cause, o.probes = time.Time{}, "", 0
}

// probe reports whether the transport is down and, if so, whether the caller now holds the
// probe (it must call probeDone) and how long to wait before probing.
func (o *outage) probe() (delay time.Duration, probing, down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return 0, false, false
	}
	if o.probing {
		return 0, false, true
	}
	o.probing = true
	return outageBackoff.Delay(o.probes + 1), true, true
}

func (o *outage) probeDone() {
	o.mu.Lock()
	o.probing = false
	o.mu.Unlock()
}

func (o *outage) over() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.since.IsZero()
}

func (o *outage) state() (since time.Time, cause string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.since, o.cause
}

// A publish that runs out of PublishTimeout may mean that the broker hangs, or that one message
// in the batch never completes (one the broker holds forever, a consumer-side hook that
// blocks). The relay cannot tell them apart from one timeout, so it charges nothing at first
// and remembers the batch's messages as suspects. When it claims suspects again it publishes
// them apart from the rest, in up to suspectGroups groups side by side, so the publishes
// without them show whether the transport works, and a hanging message ends up alone after a
// few claims. A suspect that times out alone while the transport is up (the relay is not
// paused for an outage, and no publish of the same batch without suspects failed for one) is
// charged an attempt: the timeout concerns it, and after MaxAttempts it is dead.
const (
	suspectGroups = 8
	// maxSuspects bounds the memory of suspects; past it new ones are not remembered (they
	// are treated as any other message, as a relay that restarted would).
	maxSuspects = 10_000
)

// suspects are the IDs of messages whose publish timed out without an attempt charged.
type suspects struct {
	mu  sync.Mutex
	ids map[string]struct{}
}

// among returns which of msgs are suspects, or nil when none is.
func (s *suspects) among(msgs []*Message) map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		return nil
	}
	var found map[string]bool
	for _, m := range msgs {
		if _, ok := s.ids[m.ID]; ok {
			if found == nil {
				found = map[string]bool{}
			}
			found[m.ID] = true
		}
	}
	return found
}

// update adds the IDs of add and forgets those of drop (published or dead).
func (s *suspects) update(add, drop []string) {
	if len(add) == 0 && len(drop) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range drop {
		delete(s.ids, id)
	}
	for _, id := range add {
		if s.ids == nil {
			s.ids = map[string]struct{}{}
		}
		if len(s.ids) < maxSuspects {
			s.ids[id] = struct{}{}
		}
	}
}
