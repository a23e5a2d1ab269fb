package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
)

// EnvelopeTimeLayout is how the envelope writes timestamps: ISO-8601 in UTC with milliseconds,
// exactly what JavaScript's Date.toISOString produces.
const EnvelopeTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// Envelope is the wire format of a published message, compatible with the outbox-service
// package this project grew from: {"id","eventType","payload","result","timestamp"}.
type Envelope struct {
	ID        string          `json:"id"`
	EventType string          `json:"eventType"`
	Payload   json.RawMessage `json:"payload"`
	Result    json.RawMessage `json:"result"`
	Timestamp string          `json:"timestamp"`
}

// EncodeEnvelope appends the envelope of m to dst. It fails, permanently, when the stored payload
// or result is not valid JSON (a corrupt row): publishing it would break every consumer.
func EncodeEnvelope(dst []byte, m *outbox.Message) ([]byte, error) {
	if !json.Valid(m.Payload) {
		return dst, outbox.Permanent(fmt.Errorf("envelope: message %s: payload is not valid JSON", m.ID))
	}
	result := m.Result
	if len(result) == 0 {
		result = json.RawMessage("null")
	} else if !json.Valid(result) {
		return dst, outbox.Permanent(fmt.Errorf("envelope: message %s: result is not valid JSON", m.ID))
	}
	dst = append(dst, `{"id":`...)
	dst = appendJSONString(dst, m.ID)
	dst = append(dst, `,"eventType":`...)
	dst = appendJSONString(dst, m.Type)
	dst = append(dst, `,"payload":`...)
	dst = append(dst, bytes.TrimSpace(m.Payload)...)
	dst = append(dst, `,"result":`...)
	dst = append(dst, bytes.TrimSpace(result)...)
	dst = append(dst, `,"timestamp":"`...)
	dst = m.CreatedAt.UTC().AppendFormat(dst, EnvelopeTimeLayout)
	dst = append(dst, `"}`...)
	return dst, nil
}

// DecodeEnvelope parses a published body back into a outbox.Message (ID, Type, Payload, Result,
// CreatedAt). It is what a Go consumer calls; it rejects a body missing any required field.
func DecodeEnvelope(body []byte) (*outbox.Message, error) {
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if dec.More() {
		return nil, errors.New("envelope: trailing data after the JSON object")
	}
	switch {
	case env.ID == "":
		return nil, errors.New("envelope: id is missing")
	case env.EventType == "":
		return nil, errors.New("envelope: eventType is missing")
	case len(env.Payload) == 0:
		return nil, errors.New("envelope: payload is missing")
	case env.Timestamp == "":
		return nil, errors.New("envelope: timestamp is missing")
	}
	ts, err := time.Parse(time.RFC3339Nano, env.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("envelope: timestamp: %w", err)
	}
	if y := ts.UTC().Year(); y < 1 || y > 9999 {
		// Only four-digit years in UTC can be written back in the same format.
		return nil, fmt.Errorf("envelope: timestamp %q is outside years 0001-9999 in UTC", env.Timestamp)
	}
	m := &outbox.Message{ID: env.ID, Type: env.EventType, Payload: env.Payload, CreatedAt: ts.UTC()}
	if !bytes.Equal(env.Result, []byte("null")) {
		m.Result = env.Result
	}
	return m, nil
}

// appendJSONString appends s as a JSON string literal.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s) // rare: let encoding/json do the escaping
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
