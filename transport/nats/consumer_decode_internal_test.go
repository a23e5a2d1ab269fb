package nats

import (
	"strings"
	"testing"

	natsgo "github.com/nats-io/nats.go"
)

func TestDecodeReceived(t *testing.T) {
	h := natsgo.Header{}
	h.Set(HeaderID, "id-1")
	h.Set(HeaderType, "T")
	h.Set(HeaderKey, "k")
	h.Set("Nats-Msg-Id", "id-1")
	h.Set("traceparent", "tp")
	m, err := decodeReceived([]byte(`{"a":1}`), h, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "id-1" || m.Type != "T" || m.Key != "k" || string(m.Payload) != `{"a":1}` || len(m.Headers) != 1 || m.Headers["traceparent"] != "tp" {
		t.Fatalf("decoded %+v", m)
	}
	for _, c := range []struct {
		body string
		drop string
		raw  bool
		want string
	}{
		{`{"a":1}`, HeaderID, true, HeaderID},
		{`{"a":1}`, HeaderType, true, HeaderType},
		{`not json`, "", true, "not valid JSON"},
		{`not an envelope`, "", false, "decode"},
	} {
		hh := natsgo.Header{}
		for k, v := range h {
			if k != c.drop {
				hh[k] = v
			}
		}
		if _, err := decodeReceived([]byte(c.body), hh, c.raw); err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "nats consumer: decode: ") {
			t.Errorf("decode %q without %q (raw %t) = %v, want an error naming %q", c.body, c.drop, c.raw, err, c.want)
		}
	}
}
