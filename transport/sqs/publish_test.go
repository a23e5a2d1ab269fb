package sqs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	in := prepared(t, &outbox.Message{
		Type:    "USER_CREATED",
		Key:     "user-42",
		Payload: json.RawMessage(`{"name":"Zoë \"the\" <admin>","tags":["a","b"],"n":1.5}`),
		Result:  json.RawMessage(`{"insertedId":"42"}`),
		Headers: map[string]string{
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"tracestate":   "vendor=opaque",
			"content-type": "application/json",
			"tenant.id":    "acme ünïcode",
			"empty":        "",
		},
	})[0]
	if err := tr.Publish(testCtx(t), []*outbox.Message{in}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := s.receive(testCtx(t), url, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	r := got[0]

	// The body is exactly the origin package's envelope, field by field.
	var env map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.Body), &env); err != nil {
		t.Fatalf("body %s is not JSON: %v", r.Body, err)
	}
	if keys := slices.Sorted(maps.Keys(env)); !slices.Equal(keys, []string{"eventType", "id", "payload", "result", "timestamp"}) {
		t.Fatalf("envelope fields %v", keys)
	}
	want := map[string]string{
		"id":        `"` + in.ID + `"`,
		"eventType": `"USER_CREATED"`,
		"payload":   string(in.Payload),
		"result":    string(in.Result),
		"timestamp": `"` + in.CreatedAt.Format("2006-01-02T15:04:05.000Z") + `"`,
	}
	for k, v := range want {
		if string(env[k]) != v {
			t.Errorf("envelope %s = %s, want %s", k, env[k], v)
		}
	}
	m := r.Msg
	if m.ID != in.ID || m.Type != in.Type || m.Key != in.Key || !m.CreatedAt.Equal(in.CreatedAt) ||
		string(m.Payload) != string(in.Payload) || string(m.Result) != string(in.Result) {
		t.Errorf("decoded %+v, want %+v", m, in)
	}

	// Attributes: every non-empty header, plus the type and the key.
	wantAttrs := map[string]string{
		"traceparent":     in.Headers["traceparent"],
		"tracestate":      in.Headers["tracestate"],
		"content-type":    "application/json",
		"tenant.id":       "acme ünïcode",
		sqs.AttributeType: "USER_CREATED",
		sqs.AttributeKey:  "user-42",
	}
	gotAttrs := map[string]string{}
	for k, v := range r.Attrs {
		gotAttrs[k] = str(v)
	}
	if !maps.Equal(gotAttrs, wantAttrs) {
		t.Errorf("attributes %v, want %v", gotAttrs, wantAttrs)
	}
}

func TestRawPayloadRoundTrip(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url, RawPayload: true})
	in := prepared(t, &outbox.Message{Type: "ORDER_PLACED", Payload: json.RawMessage(`{"order":7}`), Headers: map[string]string{"h": "v"}})[0]
	if err := tr.Publish(testCtx(t), []*outbox.Message{in}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := s.receive(testCtx(t), url, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if r.Body != `{"order":7}` {
		t.Errorf("body %s, want the payload alone", r.Body)
	}
	if r.Msg.ID != in.ID || r.Msg.Type != in.Type || r.Msg.Headers["h"] != "v" {
		t.Errorf("attributes carried id=%q type=%q headers=%v", r.Msg.ID, r.Msg.Type, r.Msg.Headers)
	}
	if _, ok := r.Attrs[sqs.AttributeKey]; ok {
		t.Error("an empty Key was sent as an attribute")
	}
}

func TestOversizedAmongNine(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	in := prepared(t, messages(10, "T", "")...)
	big := in[4]
	big.Payload = json.RawMessage(`"` + strings.Repeat("x", sqs.DefaultMaxMessageBytes) + `"`)

	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	if len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[big.ID]) {
		t.Fatalf("batch error %v, want only %s, permanent", be, big.ID)
	}
	if !strings.Contains(be.Failed[big.ID].Error(), "MaxMessageBytes") {
		t.Errorf("error %q does not say which limit", be.Failed[big.ID])
	}
	got, err := s.receive(testCtx(t), url, 9, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if r.Msg.ID == big.ID || seen[r.Msg.ID] {
			t.Fatalf("received %s unexpectedly", r.Msg.ID)
		}
		seen[r.Msg.ID] = true
	}
	s.expectNothing(t, url, 1500*time.Millisecond)
}

// Five messages of ~200 KiB do not fit one 256 KiB batch, and not 1 MiB either (the server's
// own limit): the transport must split them by size, not only by count.
func TestBatchesSplitBySize(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	in := prepared(t, messages(6, "T", "")...)
	for i, m := range in {
		m.Payload = json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", 200<<10)))
	}
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := s.receive(testCtx(t), url, len(in), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("received %d of %d", len(got), len(in))
	}
}

// Headers that cannot travel one attribute each (more than SQS's ten attributes, a name SQS does
// not accept, a reserved or clashing name) travel packed in one outbox.headers attribute, so every
// message a store accepts is published.
func TestHeadersThatDoNotFitAreSentPacked(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url})
	headers := func(n int) map[string]string {
		h := map[string]string{}
		for i := range n {
			h[fmt.Sprintf("h%d", i)] = "v"
		}
		return h
	}
	fits := &outbox.Message{Type: "T", Payload: json.RawMessage(`1`), Headers: headers(9)} // + outbox.type = 10
	tooMany := &outbox.Message{Type: "T", Key: "k", Payload: json.RawMessage(`2`), Headers: headers(9)}
	badName := &outbox.Message{Type: "T", Payload: json.RawMessage(`3`), Headers: map[string]string{"has space": "v"}}
	reserved := &outbox.Message{Type: "T", Payload: json.RawMessage(`4`), Headers: map[string]string{"AWS.trace": "v"}}
	clash := &outbox.Message{Type: "T", Payload: json.RawMessage(`5`), Headers: map[string]string{sqs.AttributeType: "v"}}
	control := &outbox.Message{Type: "T", Payload: json.RawMessage(`6`), Headers: map[string]string{"h": "a\x01b"}}
	in := prepared(t, fits, tooMany, badName, reserved, clash, control)
	if err := tr.Publish(testCtx(t), in); err != nil {
		t.Fatalf("publish = %v, want every message published", err)
	}
	got, err := s.receive(testCtx(t), url, len(in), false)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]received{}
	for _, r := range got {
		byID[r.Msg.ID] = r
	}
	if r := byID[fits.ID]; len(r.Attrs) != 10 {
		t.Errorf("%s arrived with %d attributes, want its 9 headers and outbox.type", fits.ID, len(r.Attrs))
	}
	for _, m := range []*outbox.Message{tooMany, badName, reserved, clash, control} {
		r := byID[m.ID]
		v, ok := r.Attrs[sqs.AttributeHeaders]
		var packed map[string]string
		if !ok || json.Unmarshal([]byte(aws.ToString(v.StringValue)), &packed) != nil || fmt.Sprint(packed) != fmt.Sprint(m.Headers) {
			t.Errorf("message with headers %v arrived with attributes %v, want them packed in %s", m.Headers, r.Attrs, sqs.AttributeHeaders)
		}
	}
}

// A character SQS refuses fails only its own message, permanently, before sending.
func TestInvalidCharacters(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{QueueURL: url, RawPayload: true})
	bad := &outbox.Message{Type: "T", Payload: json.RawMessage("\"\uFFFE\"")}
	good := &outbox.Message{Type: "T", Payload: json.RawMessage(`"ok"`)}
	in := prepared(t, bad, good)
	err := tr.Publish(testCtx(t), in)
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[bad.ID]) {
		t.Fatalf("publish = %v, want the bad message alone, permanent", err)
	}
	if _, err := s.receive(testCtx(t), url, 1, true); err != nil {
		t.Fatal(err)
	}
}

func TestRouting(t *testing.T) {
	s := needServer(t)
	orders := s.createQueue(t, false)
	users := s.createQueue(t, false)
	audit := s.createQueue(t, false)
	fallback := s.createQueue(t, false)
	name := func(u string) string { return u[strings.LastIndex(u, "/")+1:] }

	tr := newTransport(t, sqs.Config{
		QueueURL: fallback,
		Routes: map[string]string{
			"ORDER_PLACED": orders,      // by URL
			"USER_CREATED": name(users), // by name, resolved with GetQueueUrl
		},
		Route: func(m *outbox.Message) string {
			if strings.HasPrefix(m.Type, "AUDIT_") {
				return name(audit)
			}
			return ""
		},
	})
	in := prepared(t,
		&outbox.Message{Type: "ORDER_PLACED", Payload: json.RawMessage(`1`)},
		&outbox.Message{Type: "USER_CREATED", Payload: json.RawMessage(`2`)},
		&outbox.Message{Type: "AUDIT_LOGIN", Payload: json.RawMessage(`3`)},
		&outbox.Message{Type: "OTHER", Payload: json.RawMessage(`4`)},
		&outbox.Message{Type: "USER_CREATED", Payload: json.RawMessage(`5`)},
	)
	// Twice, so the second publish uses the cached queue URLs.
	for range 2 {
		if err := tr.Publish(testCtx(t), in); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for _, c := range []struct {
		url   string
		types []string
	}{
		{orders, []string{"ORDER_PLACED", "ORDER_PLACED"}},
		{users, []string{"USER_CREATED", "USER_CREATED", "USER_CREATED", "USER_CREATED"}},
		{audit, []string{"AUDIT_LOGIN", "AUDIT_LOGIN"}},
		{fallback, []string{"OTHER", "OTHER"}},
	} {
		got, err := s.receive(testCtx(t), c.url, len(c.types), false)
		if err != nil {
			t.Fatalf("queue %s: %v", c.url, err)
		}
		var types []string
		for _, r := range got {
			types = append(types, r.Msg.Type)
		}
		if !slices.Equal(types, c.types) {
			t.Errorf("queue %s received %v, want %v", name(c.url), types, c.types)
		}
		s.expectNothing(t, c.url, 1100*time.Millisecond)
	}
}

// Without QueueURL, a type no route claims fails permanently, alone.
func TestRoutingUnclaimedType(t *testing.T) {
	s := needServer(t)
	orders := s.createQueue(t, false)
	tr := newTransport(t, sqs.Config{Routes: map[string]string{"ORDER_PLACED": orders}})
	routed := &outbox.Message{Type: "ORDER_PLACED", Payload: json.RawMessage(`1`)}
	stray := &outbox.Message{Type: "STRAY", Payload: json.RawMessage(`2`)}
	err := tr.Publish(testCtx(t), prepared(t, routed, stray))
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[stray.ID]) ||
		!strings.Contains(be.Failed[stray.ID].Error(), `no queue for type "STRAY"`) {
		t.Fatalf("publish = %v, want STRAY alone to fail permanently", err)
	}
	if _, err := s.receive(testCtx(t), orders, 1, false); err != nil {
		t.Fatal(err)
	}
}

func TestClosed(t *testing.T) {
	tr := newTransport(t, sqs.Config{QueueURL: "q"})
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "")...)); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("publish after close = %v, want outbox.ErrClosed", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestNilMessage(t *testing.T) {
	tr := newTransport(t, sqs.Config{QueueURL: "q"})
	msgs := append(prepared(t, messages(1, "T", "")...), nil)
	if err := tr.Publish(testCtx(t), msgs); err == nil || !strings.Contains(err.Error(), "message 1 is nil") {
		t.Fatalf("publish with a nil message = %v, want an error naming it", err)
	}
}

// The transport uses the caller's client as it is, and builds one from the caller's aws.Config.
func TestOwnClientAndConfig(t *testing.T) {
	s := needServer(t)
	url := s.createQueue(t, false)
	// An HTTP client the test owns, so that its connections are closed before goleak looks.
	httpTr := &http.Transport{}
	t.Cleanup(httpTr.CloseIdleConnections)
	cfg := aws.Config{
		Region:       testRegion,
		BaseEndpoint: aws.String(endpoint()),
		Credentials:  aws.AnonymousCredentials{},
		HTTPClient:   &http.Client{Transport: httpTr},
	}
	for name, c := range map[string]sqs.Config{
		"Client":    {QueueURL: url, Connection: sqs.Connection{Client: s.admin}},
		"AWSConfig": {QueueURL: url, Connection: sqs.Connection{AWSConfig: &cfg}},
	} {
		t.Run(name, func(t *testing.T) {
			tr := newTransport(t, c)
			in := prepared(t, messages(3, "T", "")...)
			if err := tr.Publish(testCtx(t), in); err != nil {
				t.Fatalf("publish: %v", err)
			}
			if _, err := s.receive(testCtx(t), url, 3, false); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The transport sizes a message as SQS does: on a queue whose MaximumMessageSize is 2048, a
// message of exactly 2048 bytes (body plus attributes) is accepted by the server, and one byte
// more is refused by the transport before sending.
func TestSizeMatchesTheServer(t *testing.T) {
	s := needServer(t)
	out, err := s.admin.CreateQueue(testCtx(t), &awssqs.CreateQueueInput{
		QueueName:  aws.String(queueName(t, false)),
		Attributes: map[string]string{"MaximumMessageSize": "2048"},
	})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(out.QueueUrl)
	t.Cleanup(func() {
		_, _ = s.admin.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	})
	tr := newTransport(t, sqs.Config{QueueURL: url, MaxMessageBytes: 2048, RawPayload: true})

	// RawPayload: body = payload. Attributes: outbox.type=T (11+6+1), outbox.id=<36> (9+6+36),
	// tenant=acme (6+6+4).
	const attrs = 11 + 6 + 1 + 9 + 6 + 36 + 6 + 6 + 4
	sized := func(total int) *outbox.Message {
		return &outbox.Message{Type: "T", Headers: map[string]string{"tenant": "acme"},
			Payload: json.RawMessage(`"` + strings.Repeat("s", total-attrs-2) + `"`)}
	}
	fits, over := sized(2048), sized(2049)
	err = tr.Publish(testCtx(t), prepared(t, fits, over))
	var be *outbox.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !outbox.IsPermanent(be.Failed[over.ID]) {
		t.Fatalf("publish = %v, want only the 2049-byte message refused, permanently", err)
	}
	if !strings.Contains(be.Failed[over.ID].Error(), "2049 bytes") {
		t.Errorf("error %q does not give the size", be.Failed[over.ID])
	}
	got, err := s.receive(testCtx(t), url, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Msg.ID != fits.ID {
		t.Fatalf("received %s, want the 2048-byte message", got[0].Msg.ID)
	}
}
