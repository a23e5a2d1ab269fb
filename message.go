package outbox

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits checked when a message is written.
const (
	// DefaultMaxPayloadBytes bounds Payload plus Result when a store's config sets no limit:
	// 248 KiB, which leaves 8 KiB of the common 256 KiB broker limit (SQS) for the envelope, the
	// type, the key and the headers (MaxHeaderBytes), so that with default settings every message
	// a store accepts can be published. A store configured for more must be paired with a
	// transport that takes more.
	DefaultMaxPayloadBytes = 248 << 10
	// MaxHeaderBytes bounds the header names and values of one message together.
	MaxHeaderBytes = 4 << 10
	// MaxTypeLength bounds Type.
	MaxTypeLength = 255
	// MaxKeyLength bounds Key; it is the SQS limit for a FIFO MessageGroupId.
	MaxKeyLength = 128
	// MaxHeaders bounds the number of Headers.
	MaxHeaders = 64
)

// Message is one event stored in the outbox and published by the relay.
type Message struct {
	// ID is a UUIDv7 (time ordered) assigned at write time unless the caller set one. Consumers
	// deduplicate by it; SQS FIFO queues use it as the MessageDeduplicationId.
	ID string
	// Type names the event, e.g. USER_CREATED. Required.
	Type string
	// Key orders and partitions messages: in ordered mode the relay never publishes a message
	// before the previous one with the same Key was acknowledged. Empty means unordered. It maps
	// to the SQS FIFO MessageGroupId.
	Key string
	// Payload is the event body as JSON text. Required.
	Payload json.RawMessage
	// Result is the optional JSON of the business operation's return value (Execute sets it).
	Result json.RawMessage
	// Headers carry trace context, content type and user attributes.
	Headers map[string]string
	// CreatedAt is set at write time (UTC, millisecond precision, so every store round-trips it).
	CreatedAt time.Time
	// Attempts counts the failed publish attempts recorded so far.
	Attempts int
}

// NewMessage returns a message of type typ whose payload is v as JSON. A []byte,
// json.RawMessage or string payload is taken as JSON text and must be valid JSON.
func NewMessage(typ string, v any) (*Message, error) {
	payload, err := marshalJSON(v)
	if err != nil {
		return nil, &FieldError{Field: "payload", Problem: err.Error()}
	}
	m := &Message{Type: typ, Payload: payload}
	if err := m.Validate(DefaultMaxPayloadBytes); err != nil {
		return nil, err
	}
	return m, nil
}

// marshalJSON encodes v as JSON, except that []byte, json.RawMessage and string values are taken
// as JSON text already and only checked.
func marshalJSON(v any) (json.RawMessage, error) {
	var raw []byte
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	case string:
		raw = []byte(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("not valid JSON")
	}
	return append(json.RawMessage(nil), raw...), nil
}

// Validate reports the first problem that would stop m from being stored, naming the field.
// maxPayloadBytes bounds len(Payload)+len(Result); zero means DefaultMaxPayloadBytes.
func (m *Message) Validate(maxPayloadBytes int) error {
	if maxPayloadBytes <= 0 {
		maxPayloadBytes = DefaultMaxPayloadBytes
	}
	if m == nil {
		return &FieldError{Field: "message", Problem: "is nil"}
	}
	if m.ID != "" {
		if _, err := uuid.Parse(m.ID); err != nil {
			return &FieldError{Field: "id", Problem: fmt.Sprintf("%q is not a UUID", m.ID)}
		}
	}
	if err := checkText("type", m.Type, MaxTypeLength, true); err != nil {
		return err
	}
	if err := checkText("key", m.Key, MaxKeyLength, false); err != nil {
		return err
	}
	if len(m.Payload) == 0 {
		return &FieldError{Field: "payload", Problem: "is empty"}
	}
	if size := len(m.Payload) + len(m.Result); size > maxPayloadBytes {
		return &FieldError{Field: "payload", Problem: fmt.Sprintf("%d bytes (with result) exceeds the limit of %d", size, maxPayloadBytes)}
	}
	if !json.Valid(m.Payload) {
		return &FieldError{Field: "payload", Problem: "not valid JSON"}
	}
	if len(m.Result) > 0 && !json.Valid(m.Result) {
		return &FieldError{Field: "result", Problem: "not valid JSON"}
	}
	if len(m.Headers) > MaxHeaders {
		return &FieldError{Field: "headers", Problem: fmt.Sprintf("%d headers exceed the limit of %d", len(m.Headers), MaxHeaders)}
	}
	headerBytes := 0
	for k, v := range m.Headers {
		if err := checkText("header name", k, 256, true); err != nil {
			return err
		}
		if headerBytes += len(k) + len(v); headerBytes > MaxHeaderBytes {
			return &FieldError{Field: "headers", Problem: fmt.Sprintf("names and values exceed the limit of %d bytes", MaxHeaderBytes)}
		}
		if !utf8.ValidString(v) {
			return &FieldError{Field: "header " + k, Problem: "value is not valid UTF-8"}
		}
	}
	if m.Attempts < 0 {
		return &FieldError{Field: "attempts", Problem: "is negative"}
	}
	return nil
}

func checkText(field, s string, max int, required bool) error {
	switch {
	case s == "" && required:
		return &FieldError{Field: field, Problem: "is empty"}
	case len(s) > max:
		return &FieldError{Field: field, Problem: fmt.Sprintf("%d bytes exceeds the limit of %d", len(s), max)}
	case !utf8.ValidString(s):
		return &FieldError{Field: field, Problem: "is not valid UTF-8"}
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return &FieldError{Field: field, Problem: fmt.Sprintf("%q contains a control character", s)}
	}
	return nil
}

// Clone returns a deep copy of m, so a store or transport can keep it without sharing memory.
func (m *Message) Clone() *Message {
	c := *m
	c.Payload = append(json.RawMessage(nil), m.Payload...)
	if m.Result != nil {
		c.Result = append(json.RawMessage(nil), m.Result...)
	}
	if m.Headers != nil {
		c.Headers = make(map[string]string, len(m.Headers))
		for k, v := range m.Headers {
			c.Headers[k] = v
		}
	}
	return &c
}
