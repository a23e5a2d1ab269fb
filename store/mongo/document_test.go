package mongo

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/txoutbox/outbox"
)

func sampleMessage() *outbox.Message {
	return &outbox.Message{
		ID:   "01931a2b-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
		Type: "USER_CREATED",
		Key:  "user-42",
		// Spacing, key order, a big integer and a "$date" key: all kept byte for byte.
		Payload:   json.RawMessage(`{ "id": 12345678901234567890, "b":1.50, "a":[1,2], "$date": "not extended JSON" }`),
		Result:    json.RawMessage(`"ok"`),
		Headers:   map[string]string{"traceparent": "00-abc-01", "$odd.name": "v", "content-type": "application/json"},
		CreatedAt: time.Date(2026, 11, 27, 14, 0, 0, 123e6, time.UTC),
		Attempts:  2,
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	in := sampleMessage()
	due := in.CreatedAt.Add(time.Second)
	raw, err := bson.Marshal(newDocument(in, 7, due))
	if err != nil {
		t.Fatal(err)
	}
	// The stored shape other tools see.
	var stored bson.M
	if err := bson.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	if stored[fPayload] != string(in.Payload) || stored[fSeq] != int64(7) || stored[fStatus] != "pending" || stored[fID] != in.ID {
		t.Fatalf("stored document %v", stored)
	}
	if at, ok := stored[fAvailableAt].(bson.DateTime); !ok || !at.Time().Equal(due) {
		t.Fatalf("available_at = %v, want the due time %v", stored[fAvailableAt], due)
	}

	out, err := decodeDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case out.ID != in.ID || out.Type != in.Type || out.Key != in.Key || out.Attempts != in.Attempts:
		t.Fatalf("decoded %+v, want %+v", out.Message, in)
	case string(out.Payload) != string(in.Payload):
		t.Fatalf("payload %s, want the bytes written %s", out.Payload, in.Payload)
	case string(out.Result) != string(in.Result):
		t.Fatalf("result %s, want %s", out.Result, in.Result)
	case !out.CreatedAt.Equal(in.CreatedAt) || out.CreatedAt.Location() != time.UTC:
		t.Fatalf("created at %v, want %v in UTC", out.CreatedAt, in.CreatedAt)
	case out.Status != outbox.StatusPending:
		t.Fatalf("status %q", out.Status)
	case len(out.Headers) != len(in.Headers):
		t.Fatalf("headers %v, want %v", out.Headers, in.Headers)
	}
	for k, v := range in.Headers {
		if out.Headers[k] != v {
			t.Fatalf("header %q = %q, want %q", k, out.Headers[k], v)
		}
	}
}

func TestDocumentOptionalFields(t *testing.T) {
	in := &outbox.Message{ID: "01931a2b-3c4d-7e5f-8a9b-0c1d2e3f4a5b", Type: "T", Payload: json.RawMessage(`[]`), CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	raw, err := bson.Marshal(newDocument(in, 0, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{fResult, fHeaders, fSeq} {
		if _, err := bson.Raw(raw).LookupErr(f); err == nil {
			t.Errorf("an unset %s was stored", f)
		}
	}
	out, err := decodeDocument(raw)
	if err != nil {
		t.Fatal(err)
	}
	if out.Result != nil || out.Headers != nil || out.Key != "" {
		t.Fatalf("unset fields came back set: %+v", out.Message)
	}
}

// TestCorruptDocuments: every damage is reported with the field at fault and errCorrupt, so
// Claim dead-letters the document instead of publishing it or failing for good.
func TestCorruptDocuments(t *testing.T) {
	good := func() bson.M {
		raw, _ := bson.Marshal(newDocument(sampleMessage(), 1, time.Now()))
		var m bson.M
		_ = bson.Unmarshal(raw, &m)
		return m
	}
	cases := []struct {
		name   string
		change func(bson.M)
		want   string
	}{
		{"IDNotString", func(m bson.M) { m[fID] = bson.NewObjectID() }, "_id is a objectID"},
		{"NoType", func(m bson.M) { delete(m, fType) }, "type is missing"},
		{"PayloadNotString", func(m bson.M) { m[fPayload] = bson.M{"a": 1} }, "payload is a embedded document"},
		{"PayloadNotJSON", func(m bson.M) { m[fPayload] = "{oops" }, "payload not valid JSON"},
		{"ResultNotJSON", func(m bson.M) { m[fResult] = "nope" }, "result not valid JSON"},
		{"BadStatus", func(m bson.M) { m[fStatus] = "weird" }, "status"},
		{"CreatedAtString", func(m bson.M) { m[fCreatedAt] = "yesterday" }, "created_at is a string"},
		{"NegativeAttempts", func(m bson.M) { m[fAttempts] = -1 }, "attempts"},
		{"HeadersNotArray", func(m bson.M) { m[fHeaders] = "x" }, "headers is a string"},
		{"HeaderNotPair", func(m bson.M) { m[fHeaders] = bson.A{bson.M{"k": 1}} }, "headers[0]"},
		{"IDNotUUID", func(m bson.M) { m[fID] = "not-a-uuid" }, "id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := good()
			c.change(m)
			raw, err := bson.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = decodeDocument(raw)
			if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("decode = %v, want errCorrupt mentioning %q", err, c.want)
			}
		})
	}
}

func TestURIDatabase(t *testing.T) {
	for uri, want := range map[string]string{
		"mongodb://h:27017/shop":                      "shop",
		"mongodb://u:p@h1,h2/shop?replicaSet=rs0":     "shop",
		"mongodb+srv://cluster.example.com/app?tls=1": "app",
		"mongodb://h:27017/":                          "",
		"mongodb://h:27017":                           "",
		"mongodb://h/?replicaSet=rs0":                 "",
		"not a uri":                                   "",
	} {
		if got := uriDatabase(uri); got != want {
			t.Errorf("uriDatabase(%q) = %q, want %q", uri, got, want)
		}
	}
}

// FuzzDecodeDocument: whatever bytes a document holds, decoding returns a message or an error,
// never a panic that would stop the relay.
func FuzzDecodeDocument(f *testing.F) {
	good, _ := bson.Marshal(newDocument(sampleMessage(), 3, time.Now()))
	f.Add(good)
	f.Add([]byte{5, 0, 0, 0, 0})
	f.Add(good[:len(good)/2])
	noisy, _ := bson.Marshal(bson.D{{Key: fID, Value: 1}, {Key: fHeaders, Value: bson.A{1, "x", bson.D{}}}, {Key: fAttempts, Value: "x"}})
	f.Add(noisy)
	f.Fuzz(func(t *testing.T, b []byte) {
		sm, err := decodeDocument(b)
		if err == nil && sm == nil {
			t.Fatal("no message and no error")
		}
		if err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("error %v does not wrap errCorrupt", err)
		}
	})
}
