package nats

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// decodeReceived turns a message read from JetStream back into the message the Transport
// published: the envelope (or, raw, the payload with the outbox.id and outbox.type headers),
// Key from outbox.key, every other header as a header except JetStream's own (Nats-*), which
// the transport sets for the stream, not for the consumer.
func decodeReceived(body []byte, h natsgo.Header, raw bool) (*outbox.Message, error) {
	var msg *outbox.Message
	if raw {
		msg = &outbox.Message{
			ID:      h.Get(HeaderID),
			Type:    h.Get(HeaderType),
			Payload: json.RawMessage(body),
		}
		switch {
		case msg.ID == "":
			return nil, errors.New("nats consumer: decode: raw message without the " + HeaderID + " header")
		case msg.Type == "":
			return nil, errors.New("nats consumer: decode: raw message without the " + HeaderType + " header")
		case !json.Valid(body):
			return nil, errors.New("nats consumer: decode: raw message body is not valid JSON")
		}
		msg.Payload = append(json.RawMessage(nil), body...) // the handler may keep it
	} else {
		var err error
		if msg, err = backend.DecodeEnvelope(body); err != nil {
			return nil, fmt.Errorf("nats consumer: decode: %w", err)
		}
	}
	for name, vs := range h {
		if len(vs) == 0 {
			continue
		}
		switch {
		case name == HeaderKey:
			msg.Key = vs[0]
		case name == HeaderType, name == HeaderID:
		case len(name) >= 5 && strings.EqualFold(name[:5], "Nats-"):
		default:
			if msg.Headers == nil {
				msg.Headers = make(map[string]string, len(h))
			}
			msg.Headers[name] = vs[0] // the transport sends one value per name
		}
	}
	return msg, nil
}
