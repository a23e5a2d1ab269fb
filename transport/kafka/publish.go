package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox/core"
)

// publication is one Publish call: its records and what became of each.
//
// Why a key's later records cannot be published after an earlier one failed: a key's records
// go to one partition (same topic, same key hash). When the broker refuses a batch, or the
// producer gives up on one, franz-go fails every record it holds for that partition, not just
// that batch, since a gap in the sequence numbers would make the broker refuse the rest. That
// covers a key's later records only if they were already buffered when the failure happened,
// so the transport buffers all records of a wave before sending any (manual flushing, one
// Publish per producer client), and starts a new wave, on knowing every result of the last,
// for the records it must not buffer together: a key's records bound for a second topic, and
// records beyond what one client buffers. Failures the transport finds before producing (a
// record too large, a bad route) and failures of a key's earlier wave hold back the key's
// later records without sending them.
type publication struct {
	t      *Transport
	msgs   []*core.Message
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

func newPublication(t *Transport, msgs []*core.Message) *publication {
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
	if core.IsUnavailable(p.errs[first]) {
		err = core.Unavailable(err) // an outage held it back: it pauses the relay as the outage does
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

// produce sends the prepared records on cl, wave by wave, and records every outcome. It
// reports whether cl holds no record of this call any more (false when ctx ended first).
func (p *publication) produce(ctx context.Context, cl *kgo.Client) bool {
	pending := make([]int, 0, len(p.msgs))
	for i, r := range p.recs {
		if r != nil && !p.isSettled(i) {
			pending = append(pending, i)
		}
	}
	for len(pending) > 0 {
		var wave []int
		wave, pending = p.nextWave(pending)
		for _, i := range wave {
			cl.Produce(ctx, p.recs[i], func(_ *kgo.Record, err error) { p.answer(i, err) })
		}
		// Flush returns once every buffered record's promise has run, and the client buffers
		// only this call's records.
		if err := cl.Flush(ctx); err != nil {
			p.cutShort(wave, pending, err)
			return false
		}
		p.settleWave(wave)
		// Records of a key that failed in this wave must not go out in the next.
		var rest []int
		for _, i := range pending {
			if !p.heldBack(i) {
				rest = append(rest, i)
			}
		}
		pending = rest
	}
	return true
}

func (p *publication) isSettled(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settled[i]
}

// nextWave splits off the records that may be buffered together: at most maxWaveRecords, and
// for each key only records bound for one topic, in order. Once a key's record is left for a
// later wave, so are all its later records. The first pending record always makes the wave.
func (p *publication) nextWave(pending []int) (wave, rest []int) {
	keyTopic := map[string]string{}
	deferred := map[string]bool{}
	for _, i := range pending {
		key := p.msgs[i].Key
		later := len(wave) == maxWaveRecords
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
	}
	return wave, rest
}

// answer records what the producer's promise said about record i.
func (p *publication) answer(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answered[i], p.raw[i] = true, err
}

// settleWave classifies the results of a wave whose every promise has run. A broker's refusal
// of a whole batch for its size or content is the record's own fault only when the record was
// alone in its partition's share of the wave, and so in its batch.
func (p *publication) settleWave(wave []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	perPartition := map[topicPartition]int{}
	for _, i := range wave {
		perPartition[topicPartition{p.recs[i].Topic, p.recs[i].Partition}]++
	}
	for _, i := range wave {
		if !p.answered[i] {
			p.settleLocked(i, fmt.Errorf("kafka: publish to %s: the producer reported no outcome", p.topics[i]))
			continue
		}
		p.settleLocked(i, p.classified(i, perPartition[topicPartition{p.recs[i].Topic, p.recs[i].Partition}] == 1))
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

type topicPartition struct {
	topic     string
	partition int32
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

// err is the call's result: nil when every message was published, a *core.BatchError
// otherwise.
func (p *publication) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sealed = true
	be := core.NewBatchError()
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
