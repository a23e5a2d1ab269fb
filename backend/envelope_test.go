package backend_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

func TestEncodeEnvelope(t *testing.T) {
	m := &outbox.Message{
		ID:        "0190a6e0-0000-7000-8000-000000000001",
		Type:      "USER_CREATED",
		Payload:   json.RawMessage(`{"name":"Ada"}`),
		Result:    json.RawMessage(`{"insertedId":"1"}`),
		CreatedAt: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC),
	}
	got, err := backend.EncodeEnvelope(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"0190a6e0-0000-7000-8000-000000000001","eventType":"USER_CREATED","payload":{"name":"Ada"},"result":{"insertedId":"1"},"timestamp":"2024-05-06T07:08:09.123Z"}`
	if string(got) != want {
		t.Fatalf("envelope\n got %s\nwant %s", got, want)
	}
	m.Result, m.Type = nil, `quote"and\slash`
	got, _ = backend.EncodeEnvelope(nil, m)
	if !strings.Contains(string(got), `"result":null`) || !json.Valid(got) {
		t.Fatalf("envelope without result: %s", got)
	}
	back, err := backend.DecodeEnvelope(got)
	if err != nil || back.Type != m.Type || back.ID != m.ID || back.Result != nil || !back.CreatedAt.Equal(m.CreatedAt.Truncate(time.Millisecond)) {
		t.Fatalf("round trip = %+v, %v", back, err)
	}
}

func TestEncodeEnvelopeRefusesCorruptJSON(t *testing.T) {
	for _, m := range []*outbox.Message{
		{ID: "x", Type: "T", Payload: json.RawMessage(`{"a":`)},
		{ID: "x", Type: "T", Payload: json.RawMessage(`{}`), Result: json.RawMessage(`nope`)},
	} {
		if _, err := backend.EncodeEnvelope(nil, m); err == nil || !outbox.IsPermanent(err) {
			t.Fatalf("corrupt message encoded: err = %v", err)
		}
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	for body, want := range map[string]string{
		`not json`: "envelope",
		`{"eventType":"T","payload":{},"timestamp":"2024-01-01T00:00:00.000Z"}`:         "id is missing",
		`{"id":"1","payload":{},"timestamp":"2024-01-01T00:00:00.000Z"}`:                "eventType is missing",
		`{"id":"1","eventType":"T","timestamp":"2024-01-01T00:00:00.000Z"}`:             "payload is missing",
		`{"id":"1","eventType":"T","payload":{}}`:                                       "timestamp is missing",
		`{"id":"1","eventType":"T","payload":{},"timestamp":"yesterday"}`:               "timestamp",
		`{"id":"1","eventType":"T","payload":{},"timestamp":"2024-01-01T00:00:00Z"} {}`: "trailing",
		`{"id":1,"eventType":"T","payload":{},"timestamp":"2024-01-01T00:00:00.000Z"}`:  "envelope",
	} {
		if _, err := backend.DecodeEnvelope([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("decode %s: error %v, want it to mention %q", body, err, want)
		}
	}
}

// FuzzDecodeEnvelope checks that no body crashes the decoder, and that whatever it accepts
// encodes again to an envelope that decodes to the same message.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add([]byte(`{"id":"a","eventType":"T","payload":{"x":[1,2]},"result":null,"timestamp":"2024-01-01T00:00:00.000Z"}`))
	f.Add([]byte(`{"id":"a","eventType":"T","payload":"s","result":{"r":1},"timestamp":"2024-01-01T00:00:00.123456+02:00"}`))
	f.Add([]byte(`{"id":"\u00e9","eventType":"T\"","payload":1e400,"timestamp":"2024-01-01T00:00:00Z"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := backend.DecodeEnvelope(body)
		if err != nil {
			return
		}
		again, err := backend.EncodeEnvelope(nil, m)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode it: %v", body, err)
		}
		back, err := backend.DecodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded envelope %s does not decode: %v", again, err)
		}
		if back.ID != m.ID || back.Type != m.Type || !back.CreatedAt.Equal(m.CreatedAt.Truncate(time.Millisecond)) {
			t.Fatalf("round trip changed the message: %+v -> %+v", m, back)
		}
	})
}
