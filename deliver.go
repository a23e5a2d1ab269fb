package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/txoutbox/outbox/internal/attempts"
	"github.com/txoutbox/outbox/internal/text"
	"go.uber.org/zap"
)

var (
	// errNotSent is the outcome of a message the relay did not get to publish: an earlier
	// message of its key failed in an earlier call, or the batch ran out of time first.
	errNotSent = errors.New("not published: held back")
	// errHeldBack is the reason given for a message released because an earlier message of its
	// key in the same batch was not published.
	errHeldBack = errors.New("not published: held back behind an earlier message of its key")
	// errStopping is the reason given for a message released because the relay was stopping.
	errStopping = errors.New("not published: the relay was stopping")
)

// deliver publishes msgs, claimed under token, and settles each: acked when published,
// otherwise recorded as a failure, dead-lettered, or released without an attempt.
func (r *Relay) deliver(rn *run, token string, msgs []*Message) {
	up := r.outage.over()
	calls, held := r.plan(msgs)
	r.publishCalls(rn, calls)
	aborted := rn.ctx.Err() != nil // Stop's deadline passed: not the messages' fault
	// The transport is up for this batch when no outage was known before or after its
	// publishes, and the publish of its messages that are not suspects did not fail for one.
	up = up && r.outage.over() && !calls[0].down()
	callOf := func(string) *call { return calls[0] }
	if len(calls) > 1 {
		byID := make(map[string]*call, len(msgs))
		for _, c := range calls {
			for _, m := range c.msgs {
				byID[m.ID] = c
			}
		}
		callOf = func(id string) *call { return byID[id] }
	}

	var (
		acks      = make([]string, 0, len(msgs))
		failures  []Failure
		oldest    time.Time
		published bool
		outageErr error // set while every message failed for an outage
		// blocked holds, per key, the delay of the first message of that key that was not
		// published: in ordered mode the key's later messages wait that long too.
		blocked  map[string]time.Duration
		suspect  []string // timed out, released without an attempt
		cleared  []string // published or dead: no longer suspects
		anyTimed bool
	)
	if r.cfg.ordered() {
		blocked = map[string]time.Duration{}
	}
	for _, m := range msgs {
		if delay, held := blocked[m.Key]; held && m.Key != "" {
			failures = append(failures, Failure{ID: m.ID, Error: errHeldBack.Error(), Delay: delay, Release: true})
			continue
		}
		cause, timedOut, lone := errNotSent, false, false
		if !held[m.ID] {
			c := callOf(m.ID)
			cause, timedOut, lone = c.outcome[m.ID], c.timedOut, c.lone
			anyTimed = anyTimed || timedOut
		}
		if cause == nil {
			published = true
			acks = append(acks, m.ID)
			if oldest.IsZero() || m.CreatedAt.Before(oldest) {
				oldest = m.CreatedAt
			}
			continue
		}
		timeout := !aborted && timedOut && isTimeout(cause)
		f := r.failure(m, cause, aborted, timeout, timeout && lone && up)
		switch {
		case f.Dead:
			cleared = append(cleared, m.ID)
		case f.Release && timeout:
			suspect = append(suspect, m.ID)
		}
		if f.Release && !aborted && cause != errNotSent && outageErr == nil {
			outageErr = cause
		}
		if blocked != nil && m.Key != "" {
			blocked[m.Key] = f.Delay
			if f.Dead {
				blocked[m.Key] = 0 // behind a dead head nothing is claimable anyway
			}
		}
		failures = append(failures, f)
	}
	if anyTimed || len(calls) > 1 {
		r.suspects.update(suspect, append(cleared, acks...))
	}

	switch {
	case published:
		r.outage.end(r.log, r.cfg.Clock(), "a publish succeeded")
	case outageErr != nil && !aborted && allReleased(failures):
		// Nothing went out and nothing was the messages' fault: the transport is down. Give
		// the whole batch back at once; the relay pauses and probes.
		for i := range failures {
			failures[i].Delay = 0
		}
		r.outage.begin(r.log, r.cfg.Clock(), outageErr)
	case len(failures) > 0 && !aborted:
		r.outage.end(r.log, r.cfg.Clock(), "the transport judged the messages")
	}

	if len(acks) > 0 {
		r.settle(rn, "ack", len(acks), func(ctx context.Context) (int, error) { return r.store.Ack(ctx, token, acks) })
		r.published.Add(int64(len(acks)))
		r.lastLag.Store(int64(r.cfg.Clock().Sub(oldest)))
	}
	if len(failures) > 0 {
		r.settle(rn, "nack", len(failures), func(ctx context.Context) (int, error) { return r.store.Nack(ctx, token, failures) })
		r.count(failures)
	}
}

// A call is one Publish of a part of a claimed batch, under its own PublishTimeout.
type call struct {
	msgs     []*Message
	lone     bool // a suspect published alone
	outcome  map[string]error
	timedOut bool // PublishTimeout ran out (not Stop's deadline)
}

// down reports whether the call published nothing and failed as an outage does: by running out
// of time or with the transport unavailable. An empty call (every message of the batch was a
// suspect) is not down.
func (c *call) down() bool {
	if len(c.msgs) == 0 {
		return false
	}
	for _, m := range c.msgs {
		err := c.outcome[m.ID]
		if err == nil || !(IsUnavailable(err) || (c.timedOut && isTimeout(err))) {
			return false
		}
	}
	return true
}

// isTimeout reports whether err is what a publish that ran out of time returns.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || IsUnavailable(err)
}

// plan splits a claimed batch into the calls that publish it: calls[0] holds every message that
// is not a suspect (it may be empty), and the suspects follow in up to suspectGroups groups. In
// ordered mode a suspect goes out only as the first of its key in the batch, and what follows it
// in its key is held: released unpublished, as behind any message not yet acknowledged.
func (r *Relay) plan(msgs []*Message) (calls []*call, held map[string]bool) {
	sus := r.suspects.among(msgs)
	if sus == nil {
		return []*call{{msgs: msgs}}, nil
	}
	var (
		rest, suspected []*Message
		inRest, stopped map[string]bool // ordered: keys with a message in rest, keys at a suspect
	)
	held = map[string]bool{}
	if r.cfg.ordered() {
		inRest, stopped = map[string]bool{}, map[string]bool{}
	}
	for _, m := range msgs {
		keyed := r.cfg.ordered() && m.Key != ""
		switch {
		case keyed && stopped[m.Key]:
			held[m.ID] = true
		case !sus[m.ID]:
			rest = append(rest, m)
			if keyed {
				inRest[m.Key] = true
			}
		case keyed && inRest[m.Key]:
			stopped[m.Key] = true
			held[m.ID] = true
		default:
			if keyed {
				stopped[m.Key] = true
			}
			suspected = append(suspected, m)
		}
	}
	calls = []*call{{msgs: rest}}
	n := min(len(suspected), suspectGroups)
	for i := range n {
		group := suspected[i*len(suspected)/n : (i+1)*len(suspected)/n]
		calls = append(calls, &call{msgs: group, lone: len(group) == 1})
	}
	return calls, held
}

// publishCalls runs the calls, side by side when there are several, each under its own
// PublishTimeout, so that a batch with suspects takes no longer than one without.
func (r *Relay) publishCalls(rn *run, calls []*call) {
	one := func(c *call) {
		if len(c.msgs) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(rn.ctx, r.cfg.PublishTimeout)
		c.outcome = r.send(attempts.With(ctx, r.cfg.MaxAttempts), c.msgs)
		c.timedOut = ctx.Err() != nil && rn.ctx.Err() == nil
		cancel()
	}
	if len(calls) == 1 {
		one(calls[0])
		return
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() { one(c) })
	}
	wg.Wait()
}

func allReleased(failures []Failure) bool {
	for _, f := range failures {
		if !f.Release {
			return false
		}
	}
	return true
}

// count adds settled failures to the relay's counters and logs them.
func (r *Relay) count(failures []Failure) {
	var failed, released int
	for _, f := range failures {
		switch {
		case f.Dead:
			r.dead.Add(1)
		case f.Release:
			released++
		default:
			failed++
		}
	}
	r.failed.Add(int64(failed))
	r.released.Add(int64(released))
	if failed > 0 {
		r.log.Warn("publish failed", zap.Int("failed", failed), zap.Int("released", released))
	}
}

// send publishes msgs and returns each message's outcome by ID: nil when published. Unordered,
// or with a transport that keeps per-key order within a call, that is one Publish call. In
// ordered mode with any other transport, a key's run goes out in successive calls, one message
// per key per call, and a key stops at its first failure.
func (r *Relay) send(ctx context.Context, msgs []*Message) map[string]error {
	if !r.cfg.ordered() || r.keyOrder {
		return outcomes(msgs, r.publish(ctx, msgs))
	}
	out := make(map[string]error, len(msgs))
	failedKeys := map[string]bool{} // keys stopped at a failure: their later messages wait
	for _, wave := range inWaves(msgs) {
		var next []*Message
		for _, m := range wave {
			if failedKeys[m.Key] || ctx.Err() != nil {
				out[m.ID] = errNotSent
				continue
			}
			next = append(next, m)
		}
		if len(next) == 0 {
			continue
		}
		res := outcomes(next, r.publish(ctx, next))
		for _, m := range next {
			out[m.ID] = res[m.ID]
			if res[m.ID] != nil && m.Key != "" {
				failedKeys[m.Key] = true
			}
		}
	}
	return out
}

// inWaves splits an ordered batch so that wave i holds the i-th message of each key (and wave 0
// every unkeyed message): publishing the waves one after the other keeps each key's order.
func inWaves(msgs []*Message) [][]*Message {
	var waves [][]*Message
	depth := map[string]int{}
	for _, m := range msgs {
		i := 0
		if m.Key != "" {
			i = depth[m.Key]
			depth[m.Key] = i + 1
		}
		if i == len(waves) {
			waves = append(waves, nil)
		}
		waves[i] = append(waves[i], m)
	}
	return waves
}

// outcomes maps a Publish result to each message: a BatchError names the failed ones, any
// other error fails them all.
func outcomes(msgs []*Message, err error) map[string]error {
	out := make(map[string]error, len(msgs))
	var batchErr *BatchError
	partial := err != nil && errors.As(err, &batchErr)
	for _, m := range msgs {
		switch {
		case err == nil:
			out[m.ID] = nil
		case partial:
			out[m.ID] = batchErr.Failed[m.ID]
		default:
			out[m.ID] = err
		}
	}
	return out
}

// failure decides what becomes of a message whose publish failed: released without an attempt
// when it was not its fault (stop, outage, held back), dead when no retry can help or its
// attempts are spent, otherwise failed with an attempt and a backoff. timeout says the publish
// ran out of PublishTimeout; charge, that the timeout concerns the message (see suspects).
func (r *Relay) failure(m *Message, cause error, aborted, timeout, charge bool) Failure {
	switch {
	case aborted:
		return Failure{ID: m.ID, Error: errStopping.Error(), Release: true}
	case cause == errNotSent:
		return Failure{ID: m.ID, Error: errNotSent.Error(), Release: true}
	case timeout && charge:
		cause = fmt.Errorf("publish timed out after %v, alone, while publishes without it succeeded: %w", r.cfg.PublishTimeout, cause)
	case IsUnavailable(cause) || timeout:
		// A lone unavailable message (others went through) waits a backoff step; when the whole
		// batch failed this way the relay pauses instead (see deliver).
		return Failure{ID: m.ID, Error: text.Storable(cause.Error()), Release: true, Delay: r.cfg.Backoff.Delay(1)}
	}
	attempt := m.Attempts + 1
	text := text.Storable(cause.Error())
	if IsPermanent(cause) || attempt >= r.cfg.MaxAttempts {
		r.log.Error("message dead-lettered",
			zap.String("id", m.ID), zap.String("type", m.Type), zap.String("key", m.Key),
			zap.Int("attempts", attempt), zap.Bool("permanent", IsPermanent(cause)), zap.String("error", text))
		return Failure{ID: m.ID, Error: text, Dead: true}
	}
	return Failure{ID: m.ID, Error: text, Delay: r.cfg.Backoff.Delay(attempt)}
}

// settle runs an ack or nack of want messages, retrying store errors until it succeeds or the
// lease it protects has run out (then another relay publishes the messages again: a
// duplicate, never a loss). Past Stop's deadline it gets stopGrace more, no longer. What the
// store did not count belonged to a claim that had lost its lease.
func (r *Relay) settle(rn *run, op string, want int, call func(context.Context) (int, error)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rn.ctx), r.cfg.Lease)
	defer cancel()
	unhook := context.AfterFunc(rn.ctx, func() { time.AfterFunc(stopGrace, cancel) })
	defer unhook()
	for attempt := 1; ; attempt++ {
		n, err := call(ctx)
		if err == nil {
			if stale := want - n; stale > 0 {
				r.stale.Add(int64(stale))
				r.log.Warn(op+" ignored for messages whose lease had expired and was claimed again (consider a longer Lease)", zap.Int("stale", stale), zap.Int("settled", n))
			}
			return
		}
		delay := storeBackoff.Delay(attempt)
		r.log.Warn(op+" failed; retrying", zap.Error(err), zap.Int("attempt", attempt))
		select {
		case <-ctx.Done():
			r.log.Error(op+" abandoned: the messages will be claimed again when their lease expires", zap.Int("messages", want), zap.Error(err), zap.Bool("stopping", rn.ctx.Err() != nil))
			return
		case <-time.After(delay):
		}
	}
}
