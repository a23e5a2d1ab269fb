package sqs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

func TestInvalidText(t *testing.T) {
	for s, want := range map[string]int{
		`{"a":"plain"}`:       -1,
		"tab\tnewline\n\rok":  -1,
		"ünïcode ✓ 🎉":         -1,
		"\uFFFD is valid":     -1,
		"nul\x00":             3,
		"bell\x07":            4,
		"bad utf8 \xff":       9,
		"nonchar \uFFFE":      8,
		"nonchar \uFFFF":      8,
		"escape \x1b[0m text": 7,
	} {
		if got := invalidText(s); got != want {
			t.Errorf("invalidText(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestCheckAttributeName(t *testing.T) {
	for name, ok := range map[string]bool{
		"traceparent":            true,
		"content-type":           true,
		"tenant.id":              true,
		"x_y-z.1":                true,
		strings.Repeat("a", 256): true,
		strings.Repeat("a", 257): false,
		"":                       false,
		"has space":              false,
		"colon:name":             false,
		"AWS.trace":              false,
		"amazon.x":               false,
		".leading":               false,
		"trailing.":              false,
		"two..periods":           false,
		"ünïcode":                false,
	} {
		if err := checkAttributeName(name); (err == nil) != ok {
			t.Errorf("checkAttributeName(%q) = %v, want ok=%t", name, err, ok)
		}
	}
}

func TestFIFOGroup(t *testing.T) {
	if g := fifoGroup("", "def"); g != "def" {
		t.Errorf("empty key -> %q, want the default group", g)
	}
	if g := fifoGroup("user-42", "def"); g != "user-42" {
		t.Errorf("valid key -> %q, want the key", g)
	}
	a, b := fifoGroup("user 42", "def"), fifoGroup("user 43", "def")
	if a == b || a != fifoGroup("user 42", "def") || !groupID.MatchString(a) {
		t.Errorf("invalid keys -> %q, %q: want distinct, stable, valid group IDs", a, b)
	}
}

func TestIsFIFO(t *testing.T) {
	for q, want := range map[string]bool{
		"orders.fifo": true,
		"orders":      false,
		"https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo": true,
		"https://sqs.eu-west-1.amazonaws.com/123456789012/orders":      false,
		"http://fifo.example/1/orders":                                 false,
	} {
		if got := isFIFO(q); got != want {
			t.Errorf("isFIFO(%q) = %t, want %t", q, got, want)
		}
	}
}

// With default settings, the largest message a store accepts (the root package's limits on payload, type,
// key and headers) fits SQS's 256 KiB once wrapped in the envelope with its attributes.
func TestLargestAcceptedMessageFits(t *testing.T) {
	headers := map[string]string{}
	for i := 0; len(headers) < outbox.MaxHeaders; i++ {
		headers[fmt.Sprintf("h%02d", i)] = strings.Repeat("v", outbox.MaxHeaderBytes/outbox.MaxHeaders-3)
	}
	m := &outbox.Message{
		Type:    strings.Repeat(`"`, outbox.MaxTypeLength), // every byte escaped in the envelope
		Key:     strings.Repeat("k", outbox.MaxKeyLength),
		Headers: headers,
		Result:  json.RawMessage(`1`),
	}
	m.Payload = json.RawMessage(`"` + strings.Repeat("x", outbox.DefaultMaxPayloadBytes-len(m.Result)-2) + `"`)
	if err := backend.Prepare(context.Background(), []*outbox.Message{m}, backend.WriteOptions{}); err != nil {
		t.Fatalf("the store would refuse the test message: %v", err)
	}
	cfg := Config{QueueURL: "https://sqs.us-east-1.amazonaws.com/1/q.fifo"}.withDefaults()
	for _, raw := range []bool{false, true} {
		cfg.RawPayload = raw
		tr := &Transport{cfg: cfg}
		e, _, err := tr.encode(0, m, queue{url: cfg.QueueURL, fifo: true}, nil)
		if err != nil {
			t.Fatalf("RawPayload=%v: encode the largest accepted message: %v", raw, err)
		}
		if e.size > DefaultMaxMessageBytes {
			t.Fatalf("RawPayload=%v: %d bytes exceed the %d SQS accepts", raw, e.size, DefaultMaxMessageBytes)
		}
	}
}

func TestKeepsKeyOrderOnlyOnFIFOQueues(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want bool
	}{
		{Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/1/orders.fifo"}, true},
		{Config{QueueURL: "orders.fifo", Routes: map[string]string{"A": "a.fifo"}}, true},
		{Config{QueueURL: "orders"}, false},
		{Config{QueueURL: "orders.fifo", Routes: map[string]string{"A": "a"}}, false},
		{Config{QueueURL: "orders.fifo", Route: func(*outbox.Message) string { return "" }}, false},
	} {
		if got := (&Transport{cfg: c.cfg}).KeepsKeyOrder(); got != c.want {
			t.Errorf("%+v: KeepsKeyOrder = %v, want %v", c.cfg, got, c.want)
		}
	}
}
