package kafka

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// decodeRecord turns a record back into the message the Transport sent: the envelope (or, raw,
// the payload with the outbox.id and outbox.type headers), Key from outbox.key (or the record
// key), every other header in Headers.
func decodeRecord(r *kgo.Record, raw bool) (*outbox.Message, error) {
	var m *outbox.Message
	if raw {
		m = &outbox.Message{Payload: json.RawMessage(r.Value)}
	} else {
		var err error
		if m, err = backend.DecodeEnvelope(r.Value); err != nil {
			return nil, fmt.Errorf("kafka consumer: %w", err)
		}
	}
	m.Key = string(r.Key)
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderID:
			if raw {
				m.ID = string(h.Value)
			}
		case HeaderType:
			m.Type = string(h.Value)
		case HeaderKey:
			if len(r.Key) > 0 && string(h.Value) != m.Key {
				return nil, fmt.Errorf("kafka consumer: record key %q differs from the %s header %q", r.Key, HeaderKey, h.Value)
			}
			m.Key = string(h.Value)
		default:
			if m.Headers == nil {
				m.Headers = make(map[string]string, len(r.Headers))
			}
			m.Headers[h.Key] = string(h.Value)
		}
	}
	if raw {
		switch {
		case m.ID == "":
			return nil, errors.New("kafka consumer: raw record without the " + HeaderID + " header")
		case m.Type == "":
			return nil, errors.New("kafka consumer: raw record without the " + HeaderType + " header")
		case !json.Valid(m.Payload):
			return nil, errors.New("kafka consumer: raw record value is not valid JSON")
		}
	}
	return m, nil
}
