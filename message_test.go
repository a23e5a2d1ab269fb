package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

func TestMessageValidate(t *testing.T) {
	ok := func() *outbox.Message { return &outbox.Message{Type: "T", Payload: json.RawMessage(`{"a":1}`)} }
	cases := []struct {
		name   string
		change func(m *outbox.Message)
		field  string // "" means valid
	}{
		{"Valid", func(m *outbox.Message) {}, ""},
		{"ValidWithEverything", func(m *outbox.Message) {
			m.ID, m.Key, m.Result, m.Headers = uuid.NewString(), "k", json.RawMessage(`[1]`), map[string]string{"a": "b"}
		}, ""},
		{"EmptyType", func(m *outbox.Message) { m.Type = "" }, "type"},
		{"LongType", func(m *outbox.Message) { m.Type = strings.Repeat("t", outbox.MaxTypeLength+1) }, "type"},
		{"NewlineInType", func(m *outbox.Message) { m.Type = "A\nB" }, "type"},
		{"InvalidUTF8Key", func(m *outbox.Message) { m.Key = "\xff" }, "key"},
		{"LongKey", func(m *outbox.Message) { m.Key = strings.Repeat("k", outbox.MaxKeyLength+1) }, "key"},
		{"EmptyPayload", func(m *outbox.Message) { m.Payload = nil }, "payload"},
		{"InvalidPayload", func(m *outbox.Message) { m.Payload = json.RawMessage(`{"a":}`) }, "payload"},
		{"TwoValuesPayload", func(m *outbox.Message) { m.Payload = json.RawMessage(`1 2`) }, "payload"},
		{"InvalidResult", func(m *outbox.Message) { m.Result = json.RawMessage(`undefined`) }, "result"},
		{"Oversized", func(m *outbox.Message) {
			m.Payload = json.RawMessage(`"` + strings.Repeat("x", outbox.DefaultMaxPayloadBytes) + `"`)
		}, "payload"},
		{"NotUUID", func(m *outbox.Message) { m.ID = "42" }, "id"},
		{"EmptyHeaderName", func(m *outbox.Message) { m.Headers = map[string]string{"": "v"} }, "header"},
		{"NegativeAttempts", func(m *outbox.Message) { m.Attempts = -1 }, "attempts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := ok()
			c.change(m)
			err := m.Validate(0)
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid message refused: %v", err)
				}
				return
			}
			var fe *outbox.FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, c.field) || !errors.Is(err, outbox.ErrInvalidMessage) {
				t.Fatalf("error = %v, want a FieldError naming %q", err, c.field)
			}
		})
	}
}

func TestNewMessage(t *testing.T) {
	m, err := outbox.NewMessage("USER_CREATED", map[string]any{"id": 7})
	if err != nil || string(m.Payload) != `{"id":7}` {
		t.Fatalf("NewMessage = %+v, %v", m, err)
	}
	if _, err := outbox.NewMessage("T", json.RawMessage(`{bad`)); !errors.Is(err, outbox.ErrInvalidMessage) {
		t.Fatalf("raw invalid JSON: %v", err)
	}
	if _, err := outbox.NewMessage("T", make(chan int)); !errors.Is(err, outbox.ErrInvalidMessage) {
		t.Fatalf("unencodable payload: %v", err)
	}
	if _, err := outbox.NewMessage("", "{}"); !errors.Is(err, outbox.ErrInvalidMessage) {
		t.Fatalf("empty type: %v", err)
	}
}

func TestPrepare(t *testing.T) {
	var hooked []string
	hook := func(ctx context.Context, m *outbox.Message) {
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers["from-hook"] = ctx.Value(ctxKey{}).(string)
		hooked = append(hooked, m.Type)
	}
	ctx := context.WithValue(context.Background(), ctxKey{}, "request-1")
	now := time.Date(2026, 1, 2, 3, 4, 5, 678901234, time.FixedZone("X", 3600))
	msgs := []*outbox.Message{
		{Type: "A", Payload: json.RawMessage(`{}`)},
		{Type: "B", Payload: json.RawMessage(`{}`), CreatedAt: now.Add(-time.Hour)},
	}
	if err := backend.Prepare(ctx, msgs, backend.WriteOptions{Hooks: []backend.WriteHook{hook}, Now: now}); err != nil {
		t.Fatal(err)
	}
	id0, err := uuid.Parse(msgs[0].ID)
	if err != nil || id0.Version() != 7 {
		t.Fatalf("id %q is not a UUIDv7", msgs[0].ID)
	}
	if msgs[0].ID >= msgs[1].ID {
		t.Fatalf("ids not time ordered: %s then %s", msgs[0].ID, msgs[1].ID)
	}
	if want := now.UTC().Truncate(time.Millisecond); !msgs[0].CreatedAt.Equal(want) || msgs[0].CreatedAt.Location() != time.UTC {
		t.Fatalf("created at %v, want %v in UTC", msgs[0].CreatedAt, want)
	}
	if !msgs[1].CreatedAt.Equal(now.Add(-time.Hour).Truncate(time.Millisecond)) {
		t.Fatalf("caller's created at was not kept: %v", msgs[1].CreatedAt)
	}
	if msgs[1].Headers["from-hook"] != "request-1" || len(hooked) != 2 {
		t.Fatalf("hooks did not run with the writer's context: %v %v", msgs[1].Headers, hooked)
	}

	bad := []*outbox.Message{{Type: "A", Payload: json.RawMessage(`{}`)}, {Type: "B", Payload: json.RawMessage(`nope`)}}
	err = backend.Prepare(ctx, bad, backend.WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), "message 1") || !strings.Contains(err.Error(), `"B"`) {
		t.Fatalf("error %v does not name the message", err)
	}
	if err := backend.Prepare(ctx, []*outbox.Message{nil}, backend.WriteOptions{}); !errors.Is(err, outbox.ErrInvalidMessage) {
		t.Fatalf("nil message: %v", err)
	}
	small := []*outbox.Message{{Type: "A", Payload: json.RawMessage(`"12345"`)}}
	if err := backend.Prepare(ctx, small, backend.WriteOptions{MaxPayloadBytes: 4}); !errors.Is(err, outbox.ErrInvalidMessage) {
		t.Fatalf("store limit not applied: %v", err)
	}
}

type ctxKey struct{}

func TestClone(t *testing.T) {
	m := &outbox.Message{Type: "T", Payload: json.RawMessage(`{"a":1}`), Headers: map[string]string{"h": "1"}}
	c := m.Clone()
	c.Payload[2] = 'b'
	c.Headers["h"] = "2"
	if string(m.Payload) != `{"a":1}` || m.Headers["h"] != "1" {
		t.Fatal("clone shares memory with the original")
	}
}
