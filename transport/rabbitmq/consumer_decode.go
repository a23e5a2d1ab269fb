package rabbitmq

import (
	"encoding/json"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// decodeDelivery turns a delivery back into the message the Transport sent: the envelope (or,
// raw, the payload with the ID from message-id and the Type from the type property or the
// outbox.type header), Key from the outbox.key header, every other string header as a header.
func decodeDelivery(d *amqp.Delivery, raw bool) (*outbox.Message, error) {
	var msg *outbox.Message
	if raw {
		msg = &outbox.Message{ID: d.MessageId, Type: d.Type, Payload: json.RawMessage(d.Body), CreatedAt: d.Timestamp}
		if msg.Type == "" {
			msg.Type, _ = d.Headers[HeaderType].(string)
		}
		switch {
		case msg.ID == "":
			return nil, errors.New("rabbitmq consumer: raw message without a message-id property")
		case msg.Type == "":
			return nil, errors.New("rabbitmq consumer: raw message without a type property or " + HeaderType + " header")
		case !json.Valid(msg.Payload):
			return nil, errors.New("rabbitmq consumer: raw message body is not valid JSON")
		}
	} else {
		var err error
		if msg, err = backend.DecodeEnvelope(d.Body); err != nil {
			return nil, fmt.Errorf("rabbitmq consumer: %w", err)
		}
	}
	for name, v := range d.Headers {
		s, ok := v.(string)
		if !ok {
			continue // numbers, tables and arrays (x-death, x-delivery-count) are the broker's, not headers the transport sends
		}
		switch name {
		case HeaderKey:
			msg.Key = s
		case HeaderType:
		default:
			if msg.Headers == nil {
				msg.Headers = make(map[string]string, len(d.Headers))
			}
			msg.Headers[name] = s
		}
	}
	return msg, nil
}
