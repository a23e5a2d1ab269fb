package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
)

// publication is one Publish call: its records and what became of each.
//
// Why a key's later records cannot be published after an earlier one failed: a key's records
// go to one partition (same topic, same key hash). When the broker refuses a batch, or the
// producer gives up on one, franz-go fails every record it holds for that partition, not just
// that batch, since a gap in the sequence numbers would make the broker refuse the rest. That
// covers a key's later records only if they were already buffered when the failure happened,
// so the transport buffers all records of a wave before the flush that sends them (see
// flusher), and starts a new wave, on knowing every result of the last, for the records it must
// not buffer together: a key's records bound for a second topic, and records beyond what one
// generation of the flusher holds. Failures the transport finds before producing (a record
// too large, a bad route) and failures of a key's earlier wave hold back the key's later
// records without sending them.
type publication struct {
	t      *Transport
	msgs   []*outbox.Message
	recs   []*kgo.Record // nil for a message that failed before producing
	topics []string

	mu       sync.Mutex
	answered []bool  // the producer's promise for the record has run
	raw      []error // what the promise said
	errs     []error
	settled  []bool         // the message's outcome is known (errs[i] == nil: published)
	sealed   bool           // Publish returned: later promises change nothing
	stopped  map[string]int // key -> index of its first failed message
}

func newPublication(t *Transport, msgs []*outbox.Message) *publication {
	return &publication{
		t: t, msgs: msgs,
		recs: make([]*kgo.Record, len(msgs)), topics: make([]string, len(msgs)),
		answered: make([]bool, len(msgs)), raw: make([]error, len(msgs)),
		errs: make([]error, len(msgs)), settled: make([]bool, len(msgs)),
		stopped: map[string]int{},
	}
}

// prepare routes and encodes every message. A message that cannot be encoded fails at once and
// stops its key. It reports whether any record is left to produce.
func (p *publication) prepare() bool {
	left := false
	for i, m := range p.msgs {
		if p.heldBack(i) {
			continue
		}
		topic, err := p.t.router.topic(m)
		if err == nil {
			p.recs[i], err = p.t.encode(m, topic)
		}
		if err != nil {
			p.fail(i, err)
			continue
		}
		p.topics[i] = topic
		left = true
	}
	return left
}

// heldBack fails message i without producing it when an earlier message with its key failed
// in this call, and reports whether it did. The caller holds no lock.
func (p *publication) heldBack(i int) bool {
	m := p.msgs[i]
	if m.Key == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	first, ok := p.stopped[m.Key]
	if !ok {
		return false
	}
	err := fmt.Errorf("kafka: message %s held back: message %s with the same key failed before it in this publish, and publishing this one would overtake it", m.ID, p.msgs[first].ID)
	if outbox.IsUnavailable(p.errs[first]) {
		err = outbox.Unavailable(err) // an outage held it back: it pauses the relay as the outage does
	}
	p.settleLocked(i, err)
	return true
}

// fail records that message i failed before it was produced.
func (p *publication) fail(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.settleLocked(i, err)
}

func (p *publication) settleLocked(i int, err error) {
	if p.sealed || p.settled[i] {
		return
	}
	p.settled[i], p.errs[i] = true, err
	if err != nil && p.msgs[i].Key != "" {
		if _, ok := p.stopped[p.msgs[i].Key]; !ok {
			p.stopped[p.msgs[i].Key] = i
		}
	}
}

// produce sends the prepared records through f, wave by wave, and records every outcome. It
// returns when every record's outcome is known, or when ctx ends.
func (p *publication) produce(ctx context.Context, f *flusher) {
	pending := make([]int, 0, len(p.msgs))
	for i, r := range p.recs {
		if r != nil && !p.isSettled(i) {
			pending = append(pending, i)
		}
	}
	for len(pending) > 0 {
		wave, rest, bytes := p.nextWave(pending)
		l, g, err := f.join(ctx, bytes, len(wave))
		if err != nil {
			p.cutShort(nil, pending, err)
			return
		}
		for _, i := range wave {
			l.cl.Produce(ctx, p.recs[i], func(r *kgo.Record, err error) {
				if err != nil {
					g.fail(r)
				}
				p.answer(i, err)
			})
		}
		f.buffered(l, g)
		select {
		case <-g.flushed: // every promise of the generation has run
		case <-ctx.Done():
			p.cutShort(wave, rest, ctx.Err())
			return
		}
		p.settleWave(wave, g)
		// Records of a key that failed in this wave must not go out in the next.
		pending = pending[:0]
		for _, i := range rest {
			if !p.heldBack(i) {
				pending = append(pending, i)
			}
		}
	}
}

func (p *publication) isSettled(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settled[i]
}

// nextWave splits off the records that may be buffered together: at most maxWaveRecords of
// at most MaxMessageBytes together (what one generation of the flusher takes), and for each
// key only records bound for one topic, in order. Once a key's record is left for a later
// wave, so are all its later records. The first pending record always makes the wave.
func (p *publication) nextWave(pending []int) (wave, rest []int, bytes int) {
	keyTopic := map[string]string{}
	deferred := map[string]bool{}
	full := false
	for _, i := range pending {
		key := p.msgs[i].Key
		size := recordBound(p.recs[i])
		if len(wave) > 0 && (len(wave) == maxWaveRecords || bytes+size > p.t.cfg.MaxMessageBytes) {
			full = true
		}
		later := full
		if key != "" && !later {
			if deferred[key] {
				later = true
			} else if topic, ok := keyTopic[key]; ok && topic != p.topics[i] {
				later = true
			}
		}
		if later {
			rest = append(rest, i)
			if key != "" {
				deferred[key] = true
			}
			continue
		}
		if key != "" {
			keyTopic[key] = p.topics[i]
		}
		wave = append(wave, i)
		bytes += size
	}
	return wave, rest, bytes
}

// answer records what the producer's promise said about record i.
func (p *publication) answer(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answered[i], p.raw[i] = true, err
}

// settleWave classifies the results of a wave whose generation is flushed. A broker's refusal
// of a whole batch for its size or content is the record's own fault only when the record was
// the only one of its partition in the generation, and so alone in its batch.
func (p *publication) settleWave(wave []int, g *generation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, i := range wave {
		if !p.answered[i] {
			p.settleLocked(i, fmt.Errorf("kafka: publish to %s: the producer reported no outcome", p.topics[i]))
			continue
		}
		p.settleLocked(i, p.classified(i, g.alone(p.recs[i])))
	}
}

// classified is the answered record i's error as Publish reports it, nil when it was written.
func (p *publication) classified(i int, alone bool) error {
	if p.raw[i] == nil {
		return nil
	}
	r := p.recs[i]
	return classify(p.t.cfg, r.Topic, r.Partition, alone, p.raw[i])
}

// cutShort ends a wave that ctx interrupted: the records already answered keep their result,
// the others are reported failed with an outcome unknown, and so are the records no wave took
// yet. Promises that run later change nothing.
func (p *publication) cutShort(wave, pending []int, cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, i := range wave {
		if p.answered[i] {
			p.settleLocked(i, p.classified(i, false))
			continue
		}
		p.settleLocked(i, fmt.Errorf("kafka: publish to %s: gave up waiting for the broker's answer, so the record may still be written: %w", p.topics[i], cause))
	}
	for _, i := range pending {
		p.settleLocked(i, fmt.Errorf("kafka: publish to %s: not sent: %w", p.topics[i], cause))
	}
	p.sealed = true
}

// err is the call's result: nil when every message was published, a *outbox.BatchError
// otherwise.
func (p *publication) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sealed = true
	be := outbox.NewBatchError()
	for i, m := range p.msgs {
		if !p.settled[i] {
			be.Add(m.ID, errors.New("kafka: publish: no outcome recorded"))
			continue
		}
		if p.errs[i] != nil {
			be.Add(m.ID, p.errs[i])
		}
	}
	return be.ErrOrNil()
}
