package nats_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// A republish of one ID, in a later call, in the same call, or from another transport (another
// relay), leaves one message in the stream; its PubAck reports the duplicate, which is a
// success.
func TestDuplicateDetection(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, nil)
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	other := newTransport(t, outboxnats.Config{Subject: st.subject()})
	m := prepared(t, messages(1, "T", "")...)[0]

	for i, call := range []struct {
		tr   *outboxnats.Transport
		msgs []*outbox.Message
	}{
		{tr, []*outbox.Message{m}},
		{tr, []*outbox.Message{m}},
		{tr, []*outbox.Message{m, m}},
		{other, []*outbox.Message{m}},
	} {
		if err := call.tr.Publish(testCtx(t), call.msgs); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	if n := st.count(t); n != 1 {
		t.Fatalf("the stream holds %d messages, want 1", n)
	}
	if got := tr.Stats(); got.Published != 4 || got.Duplicates != 3 {
		t.Errorf("stats %+v, want 4 published of which 3 duplicates", got)
	}
	if got := other.Stats(); got.Published != 1 || got.Duplicates != 1 {
		t.Errorf("other transport's stats %+v, want 1 published, a duplicate", got)
	}
	got := st.readAll(t, false)
	if len(got) != 1 || got[0].Msg.ID != m.ID || got[0].Header.Get(jetstream.MsgIDHeader) != m.ID {
		t.Fatalf("read back %v, want the one message with Nats-Msg-Id %s", ids(got), m.ID)
	}
}

// What a consumer receives: the subject from the template, the headers with their own case, the
// outbox headers, and with RawPayload the payload alone plus outbox.id.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%t", raw), func(t *testing.T) {
			st := s.createStream(t, nil)
			tr := newTransport(t, outboxnats.Config{Subject: st.subject(), RawPayload: raw})
			m := prepared(t, &outbox.Message{
				Type: "order.placed", Key: "order-7", Payload: json.RawMessage(`{"total":12.5}`),
				Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Tenant": "Acme Inc", "empty": ""},
			})[0]
			if err := tr.Publish(testCtx(t), []*outbox.Message{m}); err != nil {
				t.Fatal(err)
			}
			got := st.readAll(t, raw)
			if len(got) != 1 {
				t.Fatalf("read %d messages, want 1", len(got))
			}
			r := got[0]
			if want := st.prefix + ".order.placed"; r.Subject != want {
				t.Errorf("subject %q, want %q", r.Subject, want)
			}
			h := r.Header
			for name, want := range map[string]string{
				"traceparent": m.Headers["traceparent"], "X-Tenant": "Acme Inc", "empty": "",
				outboxnats.HeaderType: "order.placed", outboxnats.HeaderKey: "order-7", jetstream.MsgIDHeader: m.ID,
			} {
				if vs, ok := h[name]; !ok || vs[0] != want {
					t.Errorf("header %s = %q (present %t), want %q; all %v", name, vs, ok, want, h)
				}
			}
			if _, ok := h[outboxnats.HeaderID]; ok != raw {
				t.Errorf("outbox.id header present = %t, want %t (only with RawPayload)", ok, raw)
			}
			if raw {
				if string(r.Msg.Payload) != `{"total":12.5}` || r.Msg.ID != m.ID {
					t.Errorf("raw body %s id %s, want the payload and %s", r.Msg.Payload, r.Msg.ID, m.ID)
				}
			} else if r.Msg.ID != m.ID || r.Msg.Type != m.Type || !r.Msg.CreatedAt.Equal(m.CreatedAt) {
				t.Errorf("envelope %+v, want id %s type %s", r.Msg, m.ID, m.Type)
			}
		})
	}
}

// Routes by Type win over Route, which wins over the template.
func TestRouting(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, nil)
	tr := newTransport(t, outboxnats.Config{
		Subject: st.subject(),
		Routes:  map[string]string{"A": st.prefix + ".routed.a"},
		Route: func(m *outbox.Message) string {
			if m.Key != "" {
				return st.prefix + ".bykey." + m.Key
			}
			return ""
		},
	})
	in := prepared(t, &outbox.Message{Type: "A", Key: "k1", Payload: json.RawMessage(`1`)},
		&outbox.Message{Type: "B", Key: "k2", Payload: json.RawMessage(`2`)},
		&outbox.Message{Type: "C", Payload: json.RawMessage(`3`)})
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]string{}
	for _, r := range st.readAll(t, false) {
		subjects[r.Msg.Type] = r.Subject
	}
	want := map[string]string{"A": st.prefix + ".routed.a", "B": st.prefix + ".bykey.k2", "C": st.prefix + ".C"}
	if fmt.Sprint(subjects) != fmt.Sprint(want) {
		t.Fatalf("subjects %v, want %v", subjects, want)
	}
}

// Messages that can never be published fail permanently, each on its own, while the rest of
// the batch is stored.
func TestPermanentFailures(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 2048 })
	tr := newTransport(t, outboxnats.Config{
		Subject: st.subject(),
		Route: func(m *outbox.Message) string {
			if m.Type == "ROUTED_BAD" {
				return st.prefix + ".*"
			}
			return ""
		},
	})
	good := messages(3, "GOOD", "")
	bad := map[string]*outbox.Message{
		"a space in the type":             {Type: "BAD TYPE", Payload: json.RawMessage(`{}`)},
		"a wildcard from Route":           {Type: "ROUTED_BAD", Payload: json.RawMessage(`{}`)},
		"a Nats- header":                  {Type: "T", Payload: json.RawMessage(`{}`), Headers: map[string]string{"Nats-Expected-Stream": "X"}},
		"a header with a line break":      {Type: "T", Payload: json.RawMessage(`{}`), Headers: map[string]string{"h": "a\r\nNats-Msg-Id: x"}},
		"a header name with a colon":      {Type: "T", Payload: json.RawMessage(`{}`), Headers: map[string]string{"a:b": "v"}},
		"a reserved header":               {Type: "T", Payload: json.RawMessage(`{}`), Headers: map[string]string{outboxnats.HeaderKey: "v"}},
		"above the stream's max_msg_size": {Type: "T", Payload: json.RawMessage(`"` + strings.Repeat("x", 4096) + `"`)},
	}
	in := slices.Clone(good)
	for _, m := range bad {
		in = append(in, m)
	}
	prepared(t, in...)
	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	for why, m := range bad {
		if e := be.Failed[m.ID]; e == nil || !outbox.IsPermanent(e) {
			t.Errorf("message with %s: error %v, want a permanent one", why, e)
		}
	}
	if len(be.Failed) != len(bad) {
		t.Errorf("%d failures, want %d: %v", len(be.Failed), len(bad), be)
	}
	if n := st.count(t); n != uint64(len(good)) {
		t.Errorf("the stream holds %d messages, want the %d good ones", n, len(good))
	}
}

// A subject no stream captures and a subject captured by another stream than Stream are outages
// of the destination: Unavailable, never Permanent, and nothing is stored elsewhere.
func TestMissingOrWrongStreamIsUnavailable(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, nil)
	cases := map[string]outboxnats.Config{
		"no stream":    {Subject: "outboxtest-nostream-" + st.prefix + ".{type}"},
		"wrong stream": {Subject: st.subject(), Stream: st.name + "_OTHER"},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			tr := newTransport(t, cfg)
			err := tr.Publish(testCtx(t), prepared(t, messages(3, "T", "")...))
			if err == nil || !outbox.IsUnavailable(err) || outbox.IsPermanent(err) {
				t.Fatalf("publish = %v, want an Unavailable error", err)
			}
		})
	}
	if n := st.count(t); n != 0 {
		t.Errorf("the stream holds %d messages, want none", n)
	}
	// The right Stream is accepted.
	tr := newTransport(t, outboxnats.Config{Subject: st.subject(), Stream: st.name})
	if err := tr.Publish(testCtx(t), prepared(t, messages(2, "T", "")...)); err != nil {
		t.Fatal(err)
	}
}

// With KeepKeyOrder a failure stops its Key: the Key's later messages are not stored (and are
// reported failed, retryable), earlier ones and other Keys are. This is the promise behind
// outbox.KeyOrderer.
func TestKeepKeyOrderStopsKeyAtFirstFailure(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject(), KeepKeyOrder: true})
	if !tr.KeepsKeyOrder() {
		t.Fatal("KeepsKeyOrder is false with KeepKeyOrder set")
	}
	a, b, c := messages(5, "T", "a"), messages(5, "T", "b"), messages(3, "T", "c")
	a[2].Payload = json.RawMessage(`"` + strings.Repeat("x", 2048) + `"`) // the stream refuses it
	c[1].Headers = map[string]string{"bad header": "v"}                   // never sent at all
	var in []*outbox.Message
	for i := range a {
		in = append(in, a[i], b[i])
		if i < len(c) {
			in = append(in, c[i])
		}
	}
	unkeyed := messages(3, "T", "")
	in = append(in, unkeyed...)
	prepared(t, in...)

	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	if len(be.Failed) != 5 || !outbox.IsPermanent(be.Failed[a[2].ID]) || !outbox.IsPermanent(be.Failed[c[1].ID]) {
		t.Fatalf("failures %v, want a[2] and c[1] permanent, a[3], a[4] and c[2] held back", be)
	}
	for _, m := range append(a[3:], c[2]) {
		if e := be.Failed[m.ID]; e == nil || outbox.IsPermanent(e) || !outbox.IsUnavailable(e) || !strings.Contains(e.Error(), "not sent") {
			t.Errorf("a later message of key a: error %v, want 'not sent', marked Unavailable (no attempt charged)", e)
		}
	}
	got := st.readAll(t, false)
	var gotA, gotB, gotC []string
	for _, r := range got {
		switch r.Msg.Key {
		case "a":
			gotA = append(gotA, r.Msg.ID)
		case "b":
			gotB = append(gotB, r.Msg.ID)
		case "c":
			gotC = append(gotC, r.Msg.ID)
		}
	}
	if want := []string{c[0].ID}; !slices.Equal(gotC, want) {
		t.Errorf("key c stored %v, want only the one before the unsendable message %v", gotC, want)
	}
	if want := []string{a[0].ID, a[1].ID}; !slices.Equal(gotA, want) {
		t.Errorf("key a stored %v, want only the two before the failure %v", gotA, want)
	}
	var wantB []string
	for _, m := range b {
		wantB = append(wantB, m.ID)
	}
	if !slices.Equal(gotB, wantB) {
		t.Errorf("key b stored %v, want all in order %v", gotB, wantB)
	}
	if len(got) != 2+5+1+3 {
		t.Errorf("stored %d messages, want 11", len(got))
	}
}

// Without KeepKeyOrder the transport promises less, and says so: messages are pipelined, so a
// failure does not stop its Key. This is why it does not report outbox.KeyOrderer then.
func TestPipelinedFailureDoesNotStopKey(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	if tr.KeepsKeyOrder() {
		t.Fatal("KeepsKeyOrder is true without KeepKeyOrder")
	}
	in := prepared(t, messages(4, "T", "a")...)
	in[1].Payload = json.RawMessage(`"` + strings.Repeat("x", 2048) + `"`)
	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || be.Failed[in[1].ID] == nil {
		t.Fatalf("publish = %v, want exactly in[1] failed", err)
	}
	if n := st.count(t); n != 3 {
		t.Fatalf("the stream holds %d messages, want 3: the key's later messages were stored", n)
	}
}

// MaxPending bounds the PubAcks awaited, without deadlocking a Publish larger than the bound or
// several at once.
func TestMaxPendingBound(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, nil)
	tr := newTransport(t, outboxnats.Config{Subject: st.subject(), MaxPending: 3})
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- tr.Publish(testCtx(t), prepared(t, messages(100, "T", "")...)) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := st.count(t); n != 400 {
		t.Fatalf("the stream holds %d messages, want 400", n)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, nil)
	tr := newTransport(t, outboxnats.Config{Subject: st.subject()})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("publish after Close = %v, want outbox.ErrClosed", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A connection of your own is used as it is, and stays open after Close.
func TestOwnConn(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, nil)
	tr := newTransport(t, outboxnats.Config{Connection: outboxnats.Connection{Conn: s.nc}, Subject: st.subject()})
	if err := tr.Publish(testCtx(t), prepared(t, messages(2, "T", "")...)); err != nil {
		t.Fatal(err)
	}
	_ = tr.Close()
	if !s.nc.IsConnected() {
		t.Fatal("Close closed a connection it did not make")
	}
	if n := st.count(t); n != 2 {
		t.Fatalf("the stream holds %d messages, want 2", n)
	}
}

// CheckStream finds a duplicate window shorter than the relay's retry horizon, and a missing
// stream.
func TestCheckStream(t *testing.T) {
	t.Parallel()
	s := needServer(t)
	st := s.createStream(t, func(c *jetstream.StreamConfig) { c.Duplicates = 2 * time.Minute })
	tr := newTransport(t, outboxnats.Config{Subject: st.subject(), Stream: st.name})
	if err := tr.CheckStream(testCtx(t), time.Minute); err != nil {
		t.Errorf("a 2m window against a 1m horizon: %v", err)
	}
	if err := tr.CheckStream(testCtx(t), 5*time.Minute+30*time.Second); err == nil || !strings.Contains(err.Error(), "duplicate window (2m0s)") {
		t.Errorf("a 2m window against a 5m30s horizon = %v, want an error naming the window", err)
	}
	missing := newTransport(t, outboxnats.Config{Subject: st.subject(), Stream: st.name + "_MISSING"})
	if err := missing.CheckStream(testCtx(t), time.Minute); !outbox.IsUnavailable(err) {
		t.Errorf("a missing stream = %v, want an Unavailable error", err)
	}
	if err := newTransport(t, outboxnats.Config{Subject: st.subject()}).CheckStream(testCtx(t), time.Minute); err == nil {
		t.Error("CheckStream without Stream succeeded")
	}
}
