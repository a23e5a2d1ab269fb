package nats

import (
	"fmt"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// The headers the transport adds to the message's own Headers.
const (
	// HeaderType carries the message Type, so consumers can dispatch without parsing the body.
	// Always sent.
	HeaderType = "outbox.type"
	// HeaderKey carries the message Key. Sent when the Key is not empty.
	HeaderKey = "outbox.key"
	// HeaderID carries the message ID. Sent only with RawPayload, whose body has no ID;
	// Nats-Msg-Id carries it too, always.
	HeaderID = "outbox.id"
)

// hdrOverhead is what NATS adds to a message's headers: the "NATS/1.0\r\n" line and the
// blank line that ends them.
const hdrOverhead = len("NATS/1.0\r\n") + len("\r\n")

// encode turns m into the message to publish on subject, its body cut from slab. Its errors
// are permanent: they concern the message itself, and sending it again would fail the same
// way. maxBytes bounds headers plus body.
func (t *Transport) encode(m *outbox.Message, subject string, maxBytes int, slab *[]byte) (*natsgo.Msg, error) {
	fail := func(format string, args ...any) (*natsgo.Msg, error) {
		return nil, outbox.Permanent(fmt.Errorf("nats: message %s: "+format, append([]any{m.ID}, args...)...))
	}

	var body []byte
	if t.cfg.RawPayload {
		body = m.Payload
	} else {
		start := len(*slab)
		b, err := backend.EncodeEnvelope(*slab, m)
		if err != nil {
			return nil, err // already permanent, and names the message
		}
		*slab = b
		body = b[start:len(b):len(b)]
	}

	n := len(m.Headers) + 5
	h := make(natsgo.Header, n)
	values := make([]string, 0, n) // one backing array for every header's value
	size := hdrOverhead
	set := func(name, value string) {
		values = append(values, value)
		h[name] = values[len(values)-1 : len(values) : len(values)]
		size += len(name) + len(value) + 4 // ": " and "\r\n"
	}
	for name, value := range m.Headers {
		if err := checkHeaderName(name); err != nil {
			return fail("header %q cannot be a NATS header: %v", name, err)
		}
		if err := checkHeaderValue(value); err != nil {
			return fail("header %q: %v", name, err)
		}
		set(name, value)
	}
	for _, own := range []struct{ name, value string }{
		{HeaderType, m.Type}, {HeaderKey, m.Key}, {HeaderID, m.ID}, {jetstream.MsgIDHeader, m.ID},
	} {
		if own.value == "" || own.name == HeaderID && !t.cfg.RawPayload {
			continue
		}
		if err := checkHeaderValue(own.value); err != nil {
			return fail("cannot travel as the %s header: %v", own.name, err)
		}
		set(own.name, own.value)
	}
	if t.cfg.Stream != "" {
		set(jetstream.ExpectedStreamHeader, t.cfg.Stream)
	}

	if size += len(body); size > maxBytes {
		return fail("%d bytes (headers and body) exceed the limit of %d (MaxMessageBytes, or the server's max_payload)", size, maxBytes)
	}
	return &natsgo.Msg{Subject: subject, Header: h, Data: body}, nil
}

// checkHeaderName accepts what NATS carries as a header name and the transport does not claim
// for itself. Nats-* headers are JetStream's instructions (deduplication, expectations, TTL,
// rollups): a message header must never steer the stream.
func checkHeaderName(name string) error {
	if name == "" {
		return fmt.Errorf("the name is empty")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("byte %d is a space, control character, colon or non-ASCII", i)
		}
	}
	switch {
	case name == HeaderType || name == HeaderKey || name == HeaderID:
		return fmt.Errorf("the name is reserved for the header the transport sends")
	case len(name) >= 5 && strings.EqualFold(name[:5], "Nats-"):
		return fmt.Errorf("Nats-* headers are JetStream's instructions, which the transport sets itself") //nolint:staticcheck // ST1005: it starts with the headers' name
	}
	return nil
}

// checkHeaderValue refuses what NATS would change in transit: line breaks (nats.go replaces
// them with spaces) and whitespace at either end (trimmed). A consumer must read back the
// value that was written, or the message is not sent at all.
func checkHeaderValue(v string) error {
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("the value has a line break, which NATS cannot carry")
	}
	if v != strings.Trim(v, " \t") {
		return fmt.Errorf("the value starts or ends with whitespace, which NATS trims")
	}
	return nil
}
