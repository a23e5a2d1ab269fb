package rabbitmq

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// The headers the transport adds to the message's Headers.
const (
	// HeaderType carries the message Type, so headers exchanges and consumers can route on it
	// without parsing the body. Always sent (the AMQP type property carries it too).
	HeaderType = "outbox.type"
	// HeaderKey carries the message Key. Sent when the Key is not empty.
	HeaderKey = "outbox.key"
)

// contentType is the content type of every body: the envelope, or the JSON payload alone.
const contentType = "application/json"

// outgoing is one message made ready for basic.publish.
type outgoing struct {
	index    int // position in the Publish call's slice
	exchange string
	key      string
	pub      amqp.Publishing
}

// encode turns m into an outgoing message. Its errors are permanent: they concern the message
// itself, and sending it again would fail the same way.
func (t *Transport) encode(index int, m *outbox.Message) (outgoing, error) {
	o := outgoing{index: index}
	fail := func(format string, args ...any) (outgoing, error) {
		return o, outbox.Permanent(fmt.Errorf("rabbitmq: message %s: "+format, append([]any{m.ID}, args...)...))
	}
	var err error
	if o.exchange, o.key, err = t.destination(m); err != nil {
		return o, err
	}

	var body []byte
	if t.cfg.RawPayload {
		body = m.Payload
	} else if body, err = backend.EncodeEnvelope(make([]byte, 0, len(m.Payload)+len(m.Result)+160), m); err != nil {
		return o, err // already permanent, and names the message
	}
	if limit := int(t.maxBytes.Load()); len(body) > limit {
		return fail("body of %d bytes exceeds MaxMessageBytes (%d)", len(body), limit)
	}

	headers := make(amqp.Table, len(m.Headers)+2)
	for name, value := range m.Headers {
		switch {
		case name == HeaderType || name == HeaderKey:
			return fail("header %q is reserved for the header the transport sends", name)
		case name == "" || len(name) > maxShortString:
			return fail("header name of %d bytes is outside the AMQP limit of 1 to %d", len(name), maxShortString)
		}
		headers[name] = value
	}
	headers[HeaderType] = m.Type
	if m.Key != "" {
		headers[HeaderKey] = m.Key
	}

	o.pub = amqp.Publishing{
		Headers:      headers,
		ContentType:  contentType,
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    m.CreatedAt,
		Type:         m.Type,
		Body:         body,
	}
	if len(m.ID) > maxShortString || len(m.Type) > maxShortString {
		return fail("ID or Type is above the AMQP limit of %d bytes for a property", maxShortString)
	}
	return o, nil
}
