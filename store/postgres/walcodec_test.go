package postgres

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/outbox"
)

func TestWALCodecRoundTrip(t *testing.T) {
	for _, m := range []*outbox.Message{
		{ID: uuid.NewString(), Type: "USER_CREATED", Payload: []byte(`{"a":1}`), CreatedAt: time.UnixMilli(1764590000123).UTC()},
		{ID: uuid.NewString(), Type: "T", Key: "k€y", Payload: []byte(` [1, 2] `), Result: []byte(`null`),
			Headers: map[string]string{"traceparent": "00-x", "": "empty name", "b": ""}, CreatedAt: time.UnixMilli(-5).UTC()},
		{ID: uuid.NewString(), Type: "T", Payload: bytes.Repeat([]byte("7"), 300000), Result: []byte(`{}`), CreatedAt: time.UnixMilli(0).UTC()},
	} {
		b, err := encodeWAL(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeWAL(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", got, m)
		}
	}
}

func TestWALBatchRoundTrip(t *testing.T) {
	msgs := []*outbox.Message{
		{ID: uuid.NewString(), Type: "A", Key: "k", Payload: []byte(`1`), CreatedAt: time.UnixMilli(1).UTC()},
		{ID: uuid.NewString(), Type: "B", Payload: []byte(`{"b":2}`), Headers: map[string]string{"h": "v"}, CreatedAt: time.UnixMilli(2).UTC()},
	}
	b, err := encodeWALBatch(msgs)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := decodeWALContent(b)
	if err != nil || len(parts) != 2 {
		t.Fatalf("split = %d parts, %v", len(parts), err)
	}
	for i, p := range parts {
		got, err := decodeWAL(p)
		if err != nil || !reflect.DeepEqual(got, msgs[i]) {
			t.Fatalf("part %d = %+v, %v; want %+v", i, got, err, msgs[i])
		}
	}
	for name, bad := range map[string][]byte{
		"truncated": b[:len(b)-1], "trailing": append(append([]byte(nil), b...), 7), "huge count": {walBatch, 0xff, 0xff, 0x03},
	} {
		if _, err := decodeWALContent(bad); err == nil {
			t.Errorf("%s batch split without an error", name)
		}
	}
	one, _ := encodeWAL(msgs[0])
	if parts, err := decodeWALContent(one); err != nil || len(parts) != 1 {
		t.Fatalf("a single message split into %d parts, %v", len(parts), err)
	}
}

func TestWALCodecRejects(t *testing.T) {
	good, _ := encodeWAL(&outbox.Message{ID: uuid.NewString(), Type: "T", Payload: []byte(`1`), Headers: map[string]string{"a": "b"}})
	for name, b := range map[string][]byte{
		"empty":          nil,
		"unknown format": append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"huge count":     append(append([]byte(nil), good[:len(good)-5]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
	} {
		if _, err := decodeWAL(b); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

// Whatever the WAL holds under the prefix, decoding never panics, and what decodes encodes to
// something that decodes to the same message.
func FuzzDecodeWAL(f *testing.F) {
	seed, _ := encodeWAL(&outbox.Message{ID: uuid.NewString(), Type: "T", Key: "k", Payload: []byte(`{}`), Result: []byte(`1`), Headers: map[string]string{"h": "v"}})
	f.Add(seed)
	f.Add([]byte{1})
	f.Add([]byte{})
	batch, _ := encodeWALBatch([]*outbox.Message{{ID: uuid.NewString(), Type: "T", Payload: []byte(`2`)}, {ID: uuid.NewString(), Type: "U", Payload: []byte(`3`)}})
	f.Add(batch)
	f.Fuzz(func(t *testing.T, content []byte) {
		parts, err := decodeWALContent(content)
		if err != nil {
			return
		}
		for _, b := range parts {
			checkReencodes(t, b)
		}
	})
}

// checkReencodes: what decodes encodes to something that decodes to the same message.
func checkReencodes(t *testing.T, b []byte) {
	m, err := decodeWAL(b)
	if err != nil {
		return
	}
	again, err := encodeWAL(m)
	if err != nil {
		t.Fatalf("a decoded message does not encode: %v", err)
	}
	m2, err := decodeWAL(again)
	if err != nil || !reflect.DeepEqual(m, m2) {
		t.Fatalf("re-encoding changed the message: %v\n%+v\n%+v", err, m, m2)
	}
}
