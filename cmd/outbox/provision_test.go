package main

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
	"github.com/txoutbox/outbox/transport/sqs"
)

// received collects what a consumer's handler got.
type received struct {
	mu  sync.Mutex
	ids map[string]int
}

func (r *received) handle(_ context.Context, m *outbox.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string]int{}
	}
	r.ids[m.ID]++
	return nil
}

func (r *received) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.ids {
		out[k] = v
	}
	return out
}

// consumer is what a consumer of the three transports offers the test.
type consumer interface {
	Start(context.Context) error
	Stop(context.Context) error
}

// consumeAll starts c and waits until it has received every one of msgs.
func consumeAll(t *testing.T, c consumer, got *received, msgs []*outbox.Message, relay *inProcessRelay) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start the consumer: %v", err)
	}
	defer func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("stop the consumer: %v", err)
		}
	}()
	if !waitFor(30*time.Second, func() bool { return len(got.snapshot()) == len(msgs) }) {
		t.Fatalf("%d of %d messages reached the consumer:\n%s", len(got.snapshot()), len(msgs), relay.stderr.String())
	}
	checkAllArrived(t, msgs, got.snapshot())
}

// provisionTwice runs `outbox provision args…` twice: the first creates, the second finds.
func provisionTwice(t *testing.T, vars map[string]string, wantFirst, wantSecond []string, args ...string) {
	t.Helper()
	for i, want := range [][]string{wantFirst, wantSecond} {
		code, stdout, stderr := runCLI(t, vars, append([]string{"provision"}, args...)...)
		if code != 0 {
			t.Fatalf("provision run %d: exit %d\n%s%s", i+1, code, stdout, stderr)
		}
		for _, line := range want {
			if !strings.Contains(stdout, line) {
				t.Errorf("provision run %d printed\n%s\nwithout %q", i+1, stdout, line)
			}
		}
	}
}

// `outbox provision` creates the stream and the durable consumer; `outbox relay` publishes into
// them and a consumer receives everything, with nothing made by hand.
func TestProvisionThenRelayToNATS(t *testing.T) {
	nc, err := natsgo.Connect(natsURL(), natsgo.Timeout(3*time.Second))
	if err != nil {
		outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ToUpper(randomName("prov_"))
	defer func() { _ = js.DeleteStream(context.Background(), name) }()

	vars := map[string]string{"OUTBOX_NATS_URL": natsURL()}
	flags := []string{"--transport", "nats", "--nats-subject", name + ".{type}", "--nats-stream", name}
	provisionTwice(t, vars,
		[]string{"created stream " + name + " (subjects " + name + ".>, file storage, duplicates 10m0s)", "created consumer " + name + "/workers"},
		[]string{"exists: stream " + name, "exists: consumer " + name + "/workers"},
		append(flags, "--nats-durable", "workers")...)

	storeURL, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(20, "ORDER_PLACED", "")
	add(t, store, msgs...)
	r := startRelayInProcess(t, vars, "", append(flags, "--store", storeURL, "--listen", "off", "--poll-interval", "20ms")...)
	var got received
	c, err := nats.NewConsumer(context.Background(), nats.ConsumerConfig{Connection: nats.Connection{URL: nats.URL(natsURL())}, Stream: name, Durable: "workers", Handler: got.handle})
	if err != nil {
		t.Fatal(err)
	}
	consumeAll(t, c, &got, msgs, r)
	if strings.Contains(r.stderr.String(), "stream check failed") {
		t.Errorf("the relay's stream check failed on the provisioned stream:\n%s", r.stderr.String())
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
}

// A stream that exists with other settings is reported, left as it is, and the command exits 1.
func TestProvisionNATSConflict(t *testing.T) {
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
	name := strings.ToUpper(randomName("prov_"))
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage, Duplicates: 2 * time.Minute}); err != nil {
		outboxtest.NeedService(t, "NATS with JetStream at "+natsURL(), err)
	}
	defer func() { _ = js.DeleteStream(context.Background(), name) }()
	code, stdout, stderr := runCLI(t, map[string]string{"OUTBOX_NATS_URL": natsURL()},
		"provision", "--transport", "nats", "--nats-subject", name+".{type}", "--nats-stream", name)
	if code != 1 || !strings.Contains(stdout, "conflict stream "+name+" (memory storage, want file, duplicates 2m0s, want 10m0s)") ||
		!strings.Contains(stderr, "outbox provision: nats: provision: stream "+name) || !strings.Contains(stderr, "exists with other settings") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.Duplicates != 2*time.Minute || c.Storage != jetstream.MemoryStorage {
		t.Errorf("the stream changed: %+v", c)
	}
}

// `outbox provision` declares the exchange, the quorum queue and its dead letters; `outbox relay`
// publishes through the exchange and a consumer of the queue receives everything.
func TestProvisionThenRelayToRabbitMQ(t *testing.T) {
	conn, err := amqp.Dial(rabbitmqURL())
	if err != nil {
		outboxtest.NeedService(t, "RabbitMQ at 127.0.0.1:5672", err)
	}
	defer conn.Close()
	queue, exchange := randomName("outbox-prov-q-"), randomName("outbox-prov-x-")
	defer func() {
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		defer ch.Close()
		for _, q := range []string{queue, queue + ".dead"} {
			_, _ = ch.QueueDelete(q, false, false, false)
		}
		for _, x := range []string{exchange, queue + ".dead"} {
			_ = ch.ExchangeDelete(x, false, false)
		}
	}()

	vars := map[string]string{"OUTBOX_RABBITMQ_URL": rabbitmqURL()}
	flags := []string{"--transport", "rabbitmq", "--rabbitmq-exchange", exchange, "--rabbitmq-routing-key", "orders.{type}"}
	provisionTwice(t, vars,
		[]string{
			"created exchange " + queue + ".dead (fanout)", "created exchange " + exchange + " (topic)",
			"created queue " + queue + " (quorum, durable, delivery limit 5, dead letters to " + queue + ".dead)",
			"bound binding " + exchange + " -> " + queue + " (key orders.#)",
		},
		[]string{"exists: exchange " + exchange, "exists: queue " + queue + " ", "exists: queue " + queue + ".dead"},
		append(flags, "--rabbitmq-queue", queue)...)
	if code, stdout, _ := runCLI(t, vars, append([]string{"provision", "--print", "--rabbitmq-queue", queue}, flags...)...); code != 0 || !json.Valid([]byte(stdout)) || !strings.Contains(stdout, `"x-queue-type": "quorum"`) {
		t.Errorf("--print: exit %d\n%s", code, stdout)
	}

	storeURL, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(20, "ORDER_PLACED", "")
	add(t, store, msgs...)
	r := startRelayInProcess(t, vars, "", append(flags, "--store", storeURL, "--listen", "off", "--poll-interval", "20ms")...)
	var got received
	c, err := rabbitmq.NewConsumer(context.Background(), rabbitmq.ConsumerConfig{Connection: rabbitmq.Connection{URL: rabbitmq.URL(rabbitmqURL())}, Queue: queue, Handler: got.handle})
	if err != nil {
		t.Fatal(err)
	}
	consumeAll(t, c, &got, msgs, r)
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
}

// `outbox provision` creates the SQS queue and its dead-letter queue and prints the URL;
// `outbox relay` publishes to it and a consumer receives everything.
func TestProvisionThenRelayToSQS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := sqsClient(t, ctx)
	queue := randomName("outbox-prov-")
	defer func() {
		for _, q := range []string{queue, queue + "-dead"} {
			if u, err := client.GetQueueUrl(context.Background(), &awssqs.GetQueueUrlInput{QueueName: aws.String(q)}); err == nil {
				_, _ = client.DeleteQueue(context.Background(), &awssqs.DeleteQueueInput{QueueUrl: u.QueueUrl})
			}
		}
	}()
	vars := map[string]string{
		"OUTBOX_SQS_ENDPOINT": sqsEndpoint(), "OUTBOX_SQS_REGION": "us-east-1",
		"OUTBOX_SQS_ACCESS_KEY_ID": "test", "OUTBOX_SQS_SECRET_ACCESS_KEY": "test",
	}
	flags := []string{"--transport", "sqs", "--sqs-queue-url", queue}
	provisionTwice(t, vars,
		[]string{"created dead-letter queue " + queue + "-dead", "created queue " + queue + " (standard, visibility timeout 30s, dead letters to " + queue + "-dead after 5 receives)", "queue URL: "},
		[]string{"exists: dead-letter queue " + queue + "-dead", "exists: queue " + queue},
		flags...)

	storeURL, store := sqliteStore(t)
	msgs := outboxtest.NewMessages(20, "ORDER_PLACED", "")
	add(t, store, msgs...)
	r := startRelayInProcess(t, vars, "", append(flags, "--store", storeURL, "--listen", "off", "--poll-interval", "20ms")...)
	var got received
	c, err := sqs.NewConsumer(context.Background(), sqs.ConsumerConfig{
		Connection: sqs.Connection{Endpoint: sqsEndpoint(), Region: "us-east-1", AccessKeyID: "test", SecretAccessKey: "test"},
		QueueURL:   queue,
		WaitTime:   time.Second,
		Handler:    got.handle,
	})
	if err != nil {
		t.Fatal(err)
	}
	consumeAll(t, c, &got, msgs, r)
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
}

// --print needs no broker, and the memory transport is refused with a reason.
func TestProvisionPrint(t *testing.T) {
	code, stdout, stderr := runCLI(t, nil, "provision", "--print", "--transport", "nats", "--nats-stream", "ORDERS", "--nats-durable", "workers", "--nats-url", "nats://127.0.0.1:1")
	var plan nats.ProvisionPlan
	if err := json.Unmarshal([]byte(stdout), &plan); code != 0 || err != nil || plan.Stream.Name != "ORDERS" ||
		plan.Stream.Subjects[0] != "outbox.>" || plan.Consumer == nil || plan.Consumer.Durable != "workers" {
		t.Errorf("--print: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "provision", "--print", "--transport", "sqs", "--sqs-queue-url", "orders.fifo")
	if code != 0 || !strings.Contains(stdout, `"QueueName": "orders-dead.fifo"`) || !strings.Contains(stdout, `"ContentBasedDeduplication": "false"`) {
		t.Errorf("--print sqs: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, nil, "provision", "--print", "--transport", "kafka", "--kafka-brokers", "127.0.0.1:1",
		"--kafka-topic", "orders", "--kafka-partitions", "6")
	if code != 0 || !strings.Contains(stdout, `"name": "orders"`) || !strings.Contains(stdout, `"partitions": 6`) {
		t.Errorf("--print kafka: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "provision", "--transport", "kafka", "--kafka-brokers", "127.0.0.1:1", "--kafka-topic", "t", "--kafka-partitions", "0"); code != 2 || !strings.Contains(stderr, "--kafka-partitions: 0 is not a partition count") {
		t.Errorf("kafka partitions 0: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "provision", "--print", "--transport", "kafka", "--kafka-brokers", "127.0.0.1:1", "--kafka-topic", "t", "--kafka-extra-topics", "a b"); code != 2 || !strings.Contains(stderr, `--kafka-extra-topics: "a b" is not a valid topic name`) {
		t.Errorf("a bad extra topic: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "provision", "--print", "--transport", "nats", "--nats-stream", "S", "--nats-durable", "a.b"); code != 2 || !strings.Contains(stderr, "--nats-durable: ") {
		t.Errorf("a bad durable name: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "provision", "--transport", "memory"); code != 2 || !strings.Contains(stderr, "nothing to create") {
		t.Errorf("memory: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, nil, "provision", "--transport", "rabbitmq", "--nats-durable", "x"); code != 2 || !strings.Contains(stderr, "--nats-durable does not apply to --transport rabbitmq") {
		t.Errorf("a flag of another transport: exit %d\n%s", code, stderr)
	}
}

// `outbox provision --transport kafka` creates the topics (the routes' too) with the partitions
// asked for; a second run finds them; `outbox relay` publishes into them on a cluster that does
// not create topics by itself.
func TestProvisionThenRelayToKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	args := []string{"--transport", "kafka", "--kafka-brokers", brokers, "--kafka-topic", "others", "--kafka-routes", "ORDER_PLACED=orders"}
	provisionTwice(t, nil,
		[]string{"created topic others (3 partitions", "created topic orders (3 partitions"},
		[]string{"exists: topic others (3 partitions", "exists: topic orders (3 partitions"},
		append(args, "--kafka-partitions", "3")...)

	storeURL, store := sqliteStore(t)
	msgs := append(outboxtest.NewMessages(10, "ORDER_PLACED", "order-1"), outboxtest.NewMessages(5, "USER_CREATED", "")...)
	add(t, store, msgs...)
	r := startRelayInProcess(t, nil, "", append([]string{"--store", storeURL, "--listen", "off", "--poll-interval", "20ms"}, args...)...)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("orders", "others"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(got) < len(msgs) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			m, err := backend.DecodeEnvelope(rec.Value)
			if err != nil {
				t.Errorf("record on %s is not an envelope: %v", rec.Topic, err)
				return
			}
			got[m.ID]++
		})
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("relay exit %d:\n%s", code, r.stderr.String())
	}
	checkAllArrived(t, msgs, got)
}
