package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serverURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

// server is a JetStream server with an admin connection for creating, reading and deleting
// streams.
type server struct {
	url string
	nc  *natsgo.Conn
	js  jetstream.JetStream
}

// needServer connects to the shared test server, or skips (fails in CI) when it does not
// answer or has no JetStream.
func needServer(t testing.TB) *server {
	t.Helper()
	return dialServer(t, serverURL(), "NATS server with JetStream (-js) at "+serverURL())
}

func dialServer(t testing.TB, url, what string) *server {
	t.Helper()
	nc, err := natsgo.Connect(url, natsgo.Timeout(3*time.Second), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		outboxtest.NeedService(t, what, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		outboxtest.NeedService(t, what, err)
	}
	return &server{url: url, nc: nc, js: js}
}

// stream is one test's stream: its own name and subjects, deleted at cleanup.
type stream struct {
	s      *server
	name   string
	prefix string // the stream captures prefix.>
	js     jetstream.Stream
}

// createStream creates a stream for this test capturing "<unique prefix>.>"; edit may adjust
// its config.
func (s *server) createStream(t testing.TB, edit func(*jetstream.StreamConfig)) *stream {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	suffix := hex.EncodeToString(b[:])
	st := &stream{s: s, name: "OUTBOX_" + name + "_" + suffix, prefix: "outboxtest" + suffix}
	cfg := jetstream.StreamConfig{Name: st.name, Subjects: []string{st.prefix + ".>"}, Storage: jetstream.MemoryStorage}
	if edit != nil {
		edit(&cfg)
	}
	var err error
	if st.js, err = s.js.CreateStream(testCtx(t), cfg); err != nil {
		t.Fatalf("create stream %s: %v", st.name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.js.DeleteStream(ctx, st.name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", st.name, err)
		}
	})
	return st
}

// subject is the template of a transport publishing into the stream.
func (st *stream) subject() string { return st.prefix + ".{type}" }

// count returns how many messages the stream holds.
func (st *stream) count(t testing.TB) uint64 {
	t.Helper()
	info, err := st.js.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// reader reads a stream from its start with an ordered consumer, as a consumer service would.
type reader struct {
	cons jetstream.Consumer
	raw  bool
}

func (st *stream) reader(t testing.TB, raw bool) *reader {
	t.Helper()
	cons, err := st.js.OrderedConsumer(testCtx(t), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &reader{cons: cons, raw: raw}
}

// received is one stored message as a consumer sees it.
type received struct {
	Msg     *outbox.Message // decoded: envelope (or raw payload), Key and Headers from the headers
	Subject string
	Header  natsgo.Header
}

// next returns the next n messages, or what it has with ctx's error when fewer arrive.
func (r *reader) next(ctx context.Context, n int) ([]received, error) {
	var got []received
	for len(got) < n {
		batch, err := r.cons.Fetch(n-len(got), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return got, err
		}
		for m := range batch.Messages() {
			msg, err := decode(m.Data(), m.Headers(), r.raw)
			if err != nil {
				return got, err
			}
			got = append(got, received{Msg: msg, Subject: m.Subject(), Header: m.Headers()})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsgo.ErrTimeout) {
			return got, err
		}
		if ctx.Err() != nil {
			return got, fmt.Errorf("received %d of %d: %w", len(got), n, ctx.Err())
		}
	}
	return got, nil
}

// readAll reads the whole stream from its start: as many messages as it holds, once every
// publish was acknowledged.
func (st *stream) readAll(t testing.TB, raw bool) []received {
	t.Helper()
	n := int(st.count(t))
	if n == 0 {
		return nil
	}
	got, err := st.reader(t, raw).next(testCtx(t), n)
	if err != nil {
		t.Fatalf("read %d of %d messages back: %v", len(got), n, err)
	}
	return got
}

// decode reads a message the way a Go consumer would: the envelope (or the raw payload with the
// outbox.id and outbox.type headers), Key from outbox.key, the other headers except
// JetStream's as Headers.
func decode(body []byte, h natsgo.Header, raw bool) (*outbox.Message, error) {
	var m *outbox.Message
	if raw {
		m = &outbox.Message{Payload: body, ID: h.Get(outboxnats.HeaderID), Type: h.Get(outboxnats.HeaderType)}
	} else {
		var err error
		if m, err = backend.DecodeEnvelope(body); err != nil {
			return nil, err
		}
	}
	for name, vs := range h {
		switch {
		case name == outboxnats.HeaderKey:
			m.Key = vs[0]
		case name == outboxnats.HeaderType, name == outboxnats.HeaderID, strings.HasPrefix(name, "Nats-"):
		default:
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[name] = vs[0]
		}
	}
	return m, nil
}

// newTransport builds a transport, closed at cleanup. An unset URL and Conn take the shared
// test server's.
func newTransport(t testing.TB, cfg outboxnats.Config) *outboxnats.Transport {
	t.Helper()
	if cfg.URL == "" && cfg.Conn == nil {
		cfg.URL = outboxnats.URL(serverURL())
	}
	tr, err := outboxnats.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("nats.New(%v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// prepared runs backend.Prepare on msgs, as a store's Add does, and returns them.
func prepared(t testing.TB, msgs ...*outbox.Message) []*outbox.Message {
	t.Helper()
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// messages returns n valid messages of type typ, all with key (which may be empty), with
// payloads {"n":i}.
func messages(n int, typ, key string) []*outbox.Message {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: typ, Key: key, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}

func ids(got []received) []string {
	out := make([]string, len(got))
	for i, r := range got {
		out[i] = r.Msg.ID
	}
	return out
}
