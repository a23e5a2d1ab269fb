package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
)

// These tests run `outbox relay` in process from a SQLite store to each broker: NATS and
// RabbitMQ on the machine's servers, Kafka on franz-go's in-process fake cluster.

func natsURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

func rabbitmqURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
}

// inProcessRelay is `outbox relay` running in a goroutine of the test.
type inProcessRelay struct {
	cancel         context.CancelFunc
	done           chan int
	stdout, stderr *syncBuffer
	addr           string // of /healthz and /metrics, with --listen 127.0.0.1:0
}

// startRelayInProcess runs `outbox relay args…` with vars and waits until it logs that it runs
// (or, with untilLog, that line instead). It is stopped at cleanup if the test has not.
func startRelayInProcess(t *testing.T, vars map[string]string, untilLog string, args ...string) *inProcessRelay {
	t.Helper()
	if untilLog == "" {
		untilLog = "relay running"
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &inProcessRelay{cancel: cancel, done: make(chan int, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	e := &env{stdout: r.stdout, stderr: r.stderr, getenv: func(k string) string { return vars[k] }}
	go func() { r.done <- run(ctx, e, append([]string{"relay"}, args...)) }()
	t.Cleanup(func() { cancel(); <-r.done })
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range strings.Split(r.stderr.String(), "\n") {
			var entry struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "serving /healthz and /metrics" {
				r.addr = entry.Addr
			}
		}
		if strings.Contains(r.stderr.String(), untilLog) {
			return r
		}
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("relay exited %d before logging %q:\n%s", code, untilLog, r.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay never logged %q:\n%s", untilLog, r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the relay as SIGTERM does and returns its exit code.
func (r *inProcessRelay) stop() int {
	r.cancel()
	code := <-r.done
	r.done <- code
	return code
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// checkAllArrived fails unless got holds exactly the IDs of msgs.
func checkAllArrived(t *testing.T, msgs []*outbox.Message, got map[string]int) {
	t.Helper()
	for _, m := range msgs {
		if got[m.ID] == 0 {
			t.Errorf("message %s never arrived", m.ID)
		}
	}
	if len(got) != len(msgs) {
		t.Errorf("%d distinct IDs arrived, want %d", len(got), len(msgs))
	}
}

func TestRelayToKafka(t *testing.T) {
	// SASL/SCRAM on the fake cluster: the password comes from the environment only.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "others"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "relay", "kafka-sasl-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	storeURL, store := sqliteStore(t)
	orders := outboxtest.NewMessages(20, "ORDER_PLACED", "order-1")
	others := outboxtest.NewMessages(10, "USER_CREATED", "")
	add(t, store, append(append([]*outbox.Message{}, orders...), others...)...)

	r := startRelayInProcess(t, map[string]string{"OUTBOX_KAFKA_SASL_PASSWORD": "kafka-sasl-pw"}, "",
		"--store", storeURL, "--transport", "kafka", "--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","),
		"--kafka-topic", "others", "--kafka-routes", "ORDER_PLACED=orders",
		"--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-user", "relay",
		"--listen", "off", "--poll-interval", "20ms")
	if strings.Contains(r.stderr.String(), "does not keep key order") {
		t.Errorf("the Kafka transport keeps key order, yet the relay says it does not:\n%s", r.stderr.String())
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("orders", "others"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SASL(scram.Auth{User: "relay", Pass: "kafka-sasl-pw"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]map[string]int{"orders": {}, "others": {}}
	var orderSeq []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(got["orders"])+len(got["others"]) < len(orders)+len(others) && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachRecord(func(rec *kgo.Record) {
			m, err := backend.DecodeEnvelope(rec.Value)
			if err != nil {
				t.Errorf("record on %s is not an envelope: %v", rec.Topic, err)
				return
			}
			got[rec.Topic][m.ID]++
			if rec.Topic == "orders" {
				orderSeq = append(orderSeq, m.ID)
			}
		})
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
	checkAllArrived(t, orders, got["orders"])
	checkAllArrived(t, others, got["others"])
	// One key, one partition: the order of the writes.
	for i, id := range orderSeq {
		if i < len(orders) && id != orders[i].ID {
			t.Fatalf("orders topic out of order at %d", i)
		}
	}
	if strings.Contains(r.stderr.String(), "kafka-sasl-pw") {
		t.Errorf("the logs show the SASL password:\n%s", r.stderr.String())
	}
	if !strings.Contains(r.stderr.String(), "kafka.Transport") {
		t.Errorf("the logs do not name the transport:\n%s", r.stderr.String())
	}
}

func TestRelayToNATS(t *testing.T) {
	nc, err := natsgo.Connect(natsURL(), natsgo.Timeout(3*time.Second))
	if err != nil {
		outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := strings.ToUpper(randomName("cli_"))
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage, Duplicates: 10 * time.Minute})
	if err != nil {
		outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
	}
	defer func() { _ = js.DeleteStream(context.Background(), name) }()

	storeURL, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(30, "ORDER_PLACED", "")
	add(t, store, msgs...)
	r := startRelayInProcess(t, map[string]string{"OUTBOX_NATS_URL": natsURL()}, "",
		"--store", storeURL, "--transport", "nats", "--nats-subject", name+".{type}", "--nats-stream", name,
		"--listen", "127.0.0.1:0", "--poll-interval", "20ms")
	if !waitFor(30*time.Second, func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs >= uint64(len(msgs))
	}) {
		t.Fatalf("the stream never held the %d messages:\n%s", len(msgs), r.stderr.String())
	}
	got := map[string]int{}
	for seq := uint64(1); seq <= uint64(len(msgs)); seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if raw.Subject != name+".ORDER_PLACED" {
			t.Errorf("subject %q, want %s.ORDER_PLACED", raw.Subject, name)
		}
		got[raw.Header.Get(natsgo.MsgIdHdr)]++
	}
	checkAllArrived(t, msgs, got)
	if strings.Contains(r.stderr.String(), "stream check failed") {
		t.Errorf("the stream check warned about a stream whose window covers the horizon:\n%s", r.stderr.String())
	}

	// A running relay with an available transport is healthy, and status --relay says so.
	if code, body := httpGet(t, "http://"+r.addr+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz: %d %q, want 200 ok", code, body)
	}
	code, stdout, stderr := runCLI(t, nil, "status", "--store", storeURL, "--relay", "http://"+r.addr, "--json")
	var report statusReport
	if err := json.Unmarshal([]byte(stdout), &report); code != 0 || err != nil || report.Relay == nil ||
		!report.Relay.Reachable || !report.Relay.OK || !report.Relay.Running || report.Relay.TransportDownSince != nil {
		t.Errorf("status --relay --json: exit %d, %v, %s %s", code, err, stdout, stderr)
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
}

// A stream whose duplicate window is shorter than the relay's retry horizon is reported at
// start, and the relay runs anyway.
func TestRelayWarnsOfAShortNATSDuplicateWindow(t *testing.T) {
	nc, err := natsgo.Connect(natsURL(), natsgo.Timeout(3*time.Second))
	if err != nil {
		outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := strings.ToUpper(randomName("cli_"))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage, Duplicates: 2 * time.Minute}); err != nil {
		outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
	}
	defer func() { _ = js.DeleteStream(context.Background(), name) }()
	storeURL, _ := sqliteStore(t)
	r := startRelayInProcess(t, nil, "", "--store", storeURL, "--transport", "nats", "--nats-url", natsURL(),
		"--nats-subject", name+".{type}", "--nats-stream", name, "--listen", "off")
	logs := r.stderr.String()
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
	if !strings.Contains(logs, "stream check failed") || !strings.Contains(logs, "duplicate window (2m0s) is shorter than the relay's retry horizon (5m15s)") {
		t.Errorf("no warning of the short window before the relay ran:\n%s", logs)
	}
}

// A NATS server that does not answer at start is waited for, as an outage; a signal ends the
// wait with exit 0.
func TestRelayWaitsForNATSAtStart(t *testing.T) {
	storeURL, _ := sqliteStore(t)
	r := startRelayInProcess(t, map[string]string{"OUTBOX_NATS_PASSWORD": "nats-pw"}, "server unavailable at start; retrying",
		"--store", storeURL, "--transport", "nats", "--nats-url", "nats://127.0.0.1:1", "--nats-user", "relay", "--listen", "off")
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d, want 0 after a signal while waiting:\n%s", code, r.stderr.String())
	}
	if strings.Contains(r.stderr.String(), "nats-pw") {
		t.Errorf("the logs show the password:\n%s", r.stderr.String())
	}
}

func TestRelayToRabbitMQ(t *testing.T) {
	conn, err := amqp.Dial(rabbitmqURL())
	if err != nil {
		outboxtest.NeedService(t, "RabbitMQ at 127.0.0.1:5672", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := randomName("outbox-cli-")
	if _, err := ch.QueueDeclare(queue, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = ch.QueueDelete(queue, false, false, false) }()
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	storeURL, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(30, "ORDER_PLACED", "")
	add(t, store, msgs...)
	// The default exchange delivers to the queue the routing key names.
	r := startRelayInProcess(t, map[string]string{"OUTBOX_RABBITMQ_URL": rabbitmqURL()}, "",
		"--store", storeURL, "--transport", "rabbitmq", "--rabbitmq-routing-key", queue, "--listen", "off", "--poll-interval", "20ms")
	// Ordered without the transport's key order: the relay says what that costs, and how to avoid it.
	if logs := r.stderr.String(); !strings.Contains(logs, "each publish carries at most one message per key") || !strings.Contains(logs, "hint: --rabbitmq-keep-key-order") {
		t.Errorf("no hint of --rabbitmq-keep-key-order for an ordered relay:\n%s", r.stderr.String())
	}
	got := map[string]int{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(msgs) {
		select {
		case d := <-deliveries:
			got[d.MessageId]++
			if m, err := backend.DecodeEnvelope(d.Body); err != nil || m.ID != d.MessageId || d.DeliveryMode != amqp.Persistent {
				t.Errorf("delivery %s: envelope %v, %v; mode %d", d.MessageId, m, err, d.DeliveryMode)
			}
		case <-timeout:
			t.Fatalf("%d of %d messages arrived:\n%s", len(got), len(msgs), r.stderr.String())
		}
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
	checkAllArrived(t, msgs, got)
	if strings.Contains(r.stderr.String(), "guest:guest") {
		t.Errorf("the logs show the URL's password:\n%s", r.stderr.String())
	}
}

// A broker that refuses connections is an outage: the relay pauses without charging attempts,
// /healthz answers 503 saying since when and why, /metrics shows the transport down, and
// `outbox status --relay` shows it too. No server is needed: nothing listens on port 1.
func TestRelayShowsATransportOutage(t *testing.T) {
	storeURL, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(5, "ORDER_PLACED", "k")
	add(t, store, msgs...)
	const pw = "rmq-outage-pw"
	r := startRelayInProcess(t, map[string]string{"OUTBOX_RABBITMQ_URL": "amqp://relay:" + pw + "@127.0.0.1:1/"}, "",
		"--store", storeURL, "--transport", "rabbitmq", "--listen", "127.0.0.1:0", "--poll-interval", "20ms")
	var body string
	if !waitFor(20*time.Second, func() bool {
		var code int
		code, body = httpGet(t, "http://"+r.addr+"/healthz")
		return code == http.StatusServiceUnavailable && strings.HasPrefix(body, "transport unavailable since ")
	}) {
		t.Fatalf("healthz never reported the outage; last %q:\n%s", body, r.stderr.String())
	}
	if !strings.Contains(body, "rabbitmq") || strings.Contains(body, pw) {
		t.Errorf("healthz %q: want the transport's error, without the password", body)
	}
	_, metrics := httpGet(t, "http://"+r.addr+"/metrics")
	for _, want := range []string{"outbox_relay_transport_up 0", "outbox_relay_failed_total 0", "outbox_relay_dead_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	code, stdout, stderr := runCLI(t, nil, "status", "--store", storeURL, "--relay", "http://"+r.addr)
	if code != 0 || !strings.Contains(stdout, "relay           http://"+r.addr+": transport unavailable since ") || strings.Contains(stdout, pw) {
		t.Errorf("status --relay: exit %d, stderr %q:\n%s", code, stderr, stdout)
	}
	code, stdout, _ = runCLI(t, nil, "status", "--store", storeURL, "--relay", "http://"+r.addr, "--json")
	var report statusReport
	if err := json.Unmarshal([]byte(stdout), &report); code != 0 || err != nil || report.Relay == nil || !report.Relay.Reachable ||
		report.Relay.OK || report.Relay.TransportDownSince == nil || !strings.Contains(report.Relay.TransportError, "rabbitmq") || report.Pending != 5 {
		t.Errorf("status --relay --json: exit %d, %v:\n%s", code, err, stdout)
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
	logs := r.stderr.String()
	if !strings.Contains(logs, "transport unavailable: pausing") || strings.Contains(logs, pw) {
		t.Errorf("the logs should tell of the outage, without the password:\n%s", logs)
	}
	// Nothing was charged: every message is pending, with no attempt.
	claimed, err := store.Claim(context.Background(), claimNow("check"))
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != len(msgs) {
		t.Fatalf("claimed %d messages after the outage, want %d", len(claimed), len(msgs))
	}
	for _, m := range claimed {
		if m.Attempts != 0 {
			t.Errorf("message %s has %d attempts after an outage, want 0", m.ID, m.Attempts)
		}
	}
}

// status --relay reports a relay it cannot reach, and refuses what is not an http URL.
func TestStatusRelayUnreachable(t *testing.T) {
	storeURL, _ := sqliteStore(t)
	code, stdout, stderr := runCLI(t, nil, "status", "--store", storeURL, "--relay", "http://127.0.0.1:1")
	if code != 0 || !strings.Contains(stdout, "relay           http://127.0.0.1:1: unreachable: ") {
		t.Errorf("status --relay to nothing: exit %d, stderr %q:\n%s", code, stderr, stdout)
	}
	for _, bad := range []string{"127.0.0.1:9090", "ftp://h:1", "http://user:typed-secret@h:1"} {
		code, _, stderr := runCLI(t, nil, "status", "--store", storeURL, "--relay", bad)
		if code != 2 || !strings.Contains(stderr, "--relay: ") || strings.Contains(stderr, "typed-secret") {
			t.Errorf("--relay %s: exit %d, stderr %q; want a usage error", bad, code, stderr)
		}
	}
}
