package kafka

import (
	"fmt"
	"maps"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// The record headers the transport adds to the message's Headers.
const (
	// HeaderType carries the message Type, so consumers can route on it without parsing the
	// value. Always sent.
	HeaderType = "outbox.type"
	// HeaderKey carries the message Key (which is also the record key). Sent when the Key is
	// not empty.
	HeaderKey = "outbox.key"
	// HeaderID carries the message ID. Sent only with RawPayload, whose value has no ID, so
	// consumers can still deduplicate.
	HeaderID = "outbox.id"
)

// Framing the size bound adds to a record's key, value and headers: the record batch header
// with its length prefixes (61 + 4, rounded up to 70) and, at their widest, the record's length, attributes, timestamp delta, offset
// delta, key length, value length and header count varints; each header adds two length
// varints. The bound is never below what the producer computes, so a record that passes it is
// never refused by the producer's own size check.
const (
	batchFraming     = 70
	recordFraming    = 5 + 1 + 10 + 5 + 5 + 5 + 5
	headerFraming    = 5 + 5
	minMessageBytes  = 1024
	reservedHeadersN = 3
)

// recordBound is the largest number of bytes r can take as the only record of a batch.
func recordBound(r *kgo.Record) int {
	n := batchFraming + recordFraming + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += headerFraming + len(h.Key) + len(h.Value)
	}
	return n
}

// encode turns m into a record for topic. Its errors are permanent: they concern the message
// itself, and sending it again would fail the same way.
func (t *Transport) encode(m *outbox.Message, topic string) (*kgo.Record, error) {
	fail := func(format string, args ...any) (*kgo.Record, error) {
		return nil, outbox.Permanent(fmt.Errorf("kafka: message %s: "+format, append([]any{m.ID}, args...)...))
	}
	r := &kgo.Record{Topic: topic}
	if m.Key != "" {
		r.Key = []byte(m.Key)
	}
	if t.cfg.RawPayload {
		if len(m.Payload) == 0 {
			return fail("payload is empty")
		}
		r.Value = []byte(m.Payload)
	} else {
		// Sized for the envelope's fields around payload and result, so it is allocated once.
		v, err := backend.EncodeEnvelope(make([]byte, 0, len(m.Payload)+len(m.Result)+len(m.ID)+len(m.Type)+96), m)
		if err != nil {
			return nil, err // already permanent, and names the message
		}
		r.Value = v
	}

	r.Headers = make([]kgo.RecordHeader, 0, len(m.Headers)+reservedHeadersN)
	// Sorted, so that a message always becomes the same bytes.
	var names []string
	if len(m.Headers) > 0 {
		names = slices.Sorted(maps.Keys(m.Headers))
	}
	for _, name := range names {
		if name == "" {
			return fail("a header has an empty name")
		}
		if name == HeaderType || name == HeaderKey || name == HeaderID {
			return fail("header %q is reserved for the header the transport sends", name)
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: name, Value: []byte(m.Headers[name])})
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderType, Value: []byte(m.Type)})
	if m.Key != "" {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderKey, Value: []byte(m.Key)})
	}
	if t.cfg.RawPayload {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderID, Value: []byte(m.ID)})
	}

	if n := recordBound(r); n > t.cfg.MaxMessageBytes {
		return fail("%d bytes (key, value, headers and framing) exceed MaxMessageBytes (%d)", n, t.cfg.MaxMessageBytes)
	}
	return r, nil
}
