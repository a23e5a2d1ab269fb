package consume

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// The headers through which a transport carries what is not in a raw body, the same on every
// broker.
const (
	HeaderID   = "outbox.id"
	HeaderType = "outbox.type"
	HeaderKey  = "outbox.key"
)

// Decode turns a delivery back into the message the transport sent: d.Message as it is, else
// the envelope in d.Body (or, raw, the bare payload with the ID and Type from the outbox.id
// and outbox.type headers), Key from outbox.key, every other header as a header.
func Decode(d Delivery, raw bool) (*outbox.Message, error) {
	if d.Err != nil {
		return nil, d.Err
	}
	if d.Message != nil {
		return d.Message.Clone(), nil
	}
	var msg *outbox.Message
	if raw {
		msg = &outbox.Message{ID: d.Headers[HeaderID], Type: d.Headers[HeaderType]}
		switch {
		case msg.ID == "":
			return nil, errors.New("raw message without the " + HeaderID + " header")
		case msg.Type == "":
			return nil, errors.New("raw message without the " + HeaderType + " header")
		case !json.Valid(d.Body):
			return nil, errors.New("raw message body is not valid JSON")
		}
		msg.Payload = append(json.RawMessage(nil), d.Body...) // the handler may keep it
	} else {
		var err error
		if msg, err = backend.DecodeEnvelope(d.Body); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
	}
	for name, v := range d.Headers {
		switch name {
		case HeaderKey:
			msg.Key = v
		case HeaderID, HeaderType:
		default:
			if msg.Headers == nil {
				msg.Headers = make(map[string]string, len(d.Headers))
			}
			msg.Headers[name] = v
		}
	}
	return msg, nil
}
