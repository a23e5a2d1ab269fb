package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/rabbitmq"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func brokerURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
}

// broker is a RabbitMQ server with an admin connection for declaring, reading and deleting
// queues and exchanges.
type broker struct {
	url   string
	admin *amqp.Connection
}

// needBroker returns the shared test broker, or skips (fails in CI) when it does not answer.
func needBroker(t *testing.T) *broker {
	t.Helper()
	conn, err := amqp.DialConfig(brokerURL(), amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		outboxtest.NeedService(t, "RabbitMQ at "+rabbitmq.RedactURL(brokerURL()), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{url: brokerURL(), admin: conn}
}

// channel opens an admin channel, closed at cleanup.
func (b *broker) channel(t testing.TB) *amqp.Channel {
	t.Helper()
	ch, err := b.admin.Channel()
	if err != nil {
		t.Fatalf("open admin channel: %v", err)
	}
	t.Cleanup(func() { _ = ch.Close() })
	return ch
}

// name returns a queue or exchange name unique to this test run.
func name(t testing.TB, what string) string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	n := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			return c
		}
		return '-'
	}, t.Name())
	if len(n) > 80 {
		n = n[len(n)-80:]
	}
	return "outbox-test-" + what + "-" + n + "-" + hex.EncodeToString(r[:])
}

// queue declares a queue for this test with args, deleted at cleanup, and returns its name.
func (b *broker) queue(t testing.TB, args amqp.Table) string {
	t.Helper()
	q := name(t, "q")
	ch := b.channel(t)
	if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
		t.Fatalf("declare queue: %v", err)
	}
	t.Cleanup(func() {
		ch, err := b.admin.Channel()
		if err != nil {
			return // the connection is gone with the test; the broker is not ours to fix
		}
		defer ch.Close()
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			t.Errorf("delete queue %s: %v", q, err)
		}
	})
	return q
}

// exchange declares an exchange of kind for this test, deleted at cleanup, and returns its name.
func (b *broker) exchange(t testing.TB, kind string) string {
	t.Helper()
	x := name(t, "x")
	ch := b.channel(t)
	if err := ch.ExchangeDeclare(x, kind, true, false, false, false, nil); err != nil {
		t.Fatalf("declare exchange: %v", err)
	}
	t.Cleanup(func() {
		ch, err := b.admin.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			t.Errorf("delete exchange %s: %v", x, err)
		}
	})
	return x
}

func (b *broker) bind(t testing.TB, queue, key, exchange string) {
	t.Helper()
	if err := b.channel(t).QueueBind(queue, key, exchange, false, nil); err != nil {
		t.Fatalf("bind: %v", err)
	}
}

// received is one message as a consumer sees it.
type received struct {
	D   amqp.Delivery
	Msg *outbox.Message // decoded from the envelope, Key and Headers from the headers table
}

// receive consumes n messages from queue (acknowledging them) or returns what came when ctx
// ends.
func (b *broker) receive(ctx context.Context, queue string, n int, raw bool) ([]received, error) {
	ch, err := b.admin.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	if err := ch.Qos(500, 0, false); err != nil {
		return nil, err
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return nil, err
	}
	var got []received
	for len(got) < n {
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("received %d of %d: %w", len(got), n, ctx.Err())
		case d, ok := <-deliveries:
			if !ok {
				return got, fmt.Errorf("received %d of %d: consumer closed", len(got), n)
			}
			m, err := decode(d, raw)
			if err != nil {
				return got, err
			}
			if err := d.Ack(false); err != nil {
				return got, err
			}
			got = append(got, received{D: d, Msg: m})
		}
	}
	return got, nil
}

// count returns how many messages queue holds.
func (b *broker) count(t testing.TB, queue string) int {
	t.Helper()
	ch, err := b.admin.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q.Messages
}

// decode reads a delivery the way a Go consumer would.
func decode(d amqp.Delivery, raw bool) (*outbox.Message, error) {
	var m *outbox.Message
	if raw {
		m = &outbox.Message{ID: d.MessageId, Type: d.Type, Payload: d.Body}
	} else {
		var err error
		if m, err = backend.DecodeEnvelope(d.Body); err != nil {
			return nil, err
		}
	}
	for k, v := range d.Headers {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("header %s is a %T, want a string", k, v)
		}
		switch k {
		case rabbitmq.HeaderKey:
			m.Key = s
		case rabbitmq.HeaderType:
		default:
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[k] = s
		}
	}
	return m, nil
}

// newTransport builds a transport on the test broker unless cfg names another URL, closed at
// cleanup.
func newTransport(t testing.TB, cfg rabbitmq.Config) *rabbitmq.Transport {
	t.Helper()
	if cfg.URL == "" && cfg.Conn == nil {
		cfg.URL = rabbitmq.URL(brokerURL())
	}
	tr, err := rabbitmq.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("rabbitmq.New(%v): %v", cfg, err)
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

// messages returns n valid messages of type typ, all with key (which may be empty).
func messages(n int, typ, key string) []*outbox.Message {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: typ, Key: key, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}
