package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// Each transport's flags and variables are checked before anything connects; every problem is
// one line naming the flag (or the variable, for a credential), and none repeats a secret.
func TestTransportUsageErrors(t *testing.T) {
	const secret = "pa55word"
	store := "sqlite:" + filepath.Join(t.TempDir(), "x.db")
	relay := func(args ...string) []string { return append([]string{"relay", "--store", store}, args...) }
	kafkaArgs := func(args ...string) []string {
		return relay(append([]string{"--transport", "kafka", "--kafka-brokers", "127.0.0.1:9092", "--kafka-topic", "events"}, args...)...)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte("not a certificate "+secret), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		vars map[string]string
		want string
	}{
		{"unknown transport", relay("--transport", "pulsar"), nil, "--transport (OUTBOX_TRANSPORT): not one of sqs, kafka, nats, rabbitmq, memory"},
		{"sqs flag with kafka", relay("--transport", "kafka", "--kafka-brokers", "h:1", "--sqs-queue-url", "q"), nil, "--sqs-queue-url (OUTBOX_SQS_QUEUE_URL) does not apply to --transport kafka"},
		{"nats variable with memory", relay("--transport", "memory"), map[string]string{"OUTBOX_NATS_URL": "nats://h:4222"}, "--nats-url (OUTBOX_NATS_URL) does not apply to --transport memory"},
		{"kafka flag with sqs", relay("--sqs-queue-url", "q", "--kafka-topic", "t"), nil, "--kafka-topic (OUTBOX_KAFKA_TOPIC) does not apply to --transport sqs"},

		{"kafka without brokers", relay("--transport", "kafka"), nil, "--kafka-brokers (OUTBOX_KAFKA_BROKERS): is empty"},
		{"kafka bad broker", relay("--transport", "kafka", "--kafka-brokers", "127.0.0.1:9092,broker", "--kafka-topic", "t"), nil, `--kafka-brokers (OUTBOX_KAFKA_BROKERS): "broker" is not host:port`},
		{"kafka empty broker entry", relay("--transport", "kafka", "--kafka-brokers", "h:1,,h:2"), nil, "--kafka-brokers (OUTBOX_KAFKA_BROKERS): has an empty entry"},
		{"kafka broker with credentials", relay("--transport", "kafka", "--kafka-brokers", "app:"+secret+"@h:9092", "--kafka-topic", "t"), nil, "--kafka-brokers (OUTBOX_KAFKA_BROKERS): must be host:port without user information"},
		{"kafka without topic", relay("--transport", "kafka", "--kafka-brokers", "h:9092"), nil, "--kafka-topic (OUTBOX_KAFKA_TOPIC): is empty"},
		{"kafka bad topic", relay("--transport", "kafka", "--kafka-brokers", "h:9092", "--kafka-topic", "a topic"), nil, "--kafka-topic (OUTBOX_KAFKA_TOPIC): \"a topic\" is not a valid topic name"},
		{"kafka malformed routes", kafkaArgs("--kafka-routes", "ORDER_PLACED"), nil, "--kafka-routes (OUTBOX_KAFKA_ROUTES): want TYPE=TOPIC"},
		{"kafka route to a bad topic", kafkaArgs("--kafka-routes", "A=orders,B=bad/topic"), nil, `--kafka-routes (OUTBOX_KAFKA_ROUTES): "bad/topic" is not a valid topic name`},
		{"kafka route twice", kafkaArgs("--kafka-routes", "A=x,A=y"), nil, `--kafka-routes (OUTBOX_KAFKA_ROUTES): type "A" is routed twice`},
		{"kafka bad sasl mechanism", kafkaArgs("--kafka-sasl-mechanism", "GSSAPI", "--kafka-sasl-user", "u"), map[string]string{"OUTBOX_KAFKA_SASL_PASSWORD": secret}, "--kafka-sasl-mechanism (OUTBOX_KAFKA_SASL_MECHANISM): \"GSSAPI\" is not one of"},
		{"kafka sasl without user", kafkaArgs("--kafka-sasl-mechanism", "plain"), map[string]string{"OUTBOX_KAFKA_SASL_PASSWORD": secret}, "--kafka-sasl-user (OUTBOX_KAFKA_SASL_USER): is empty"},
		{"kafka sasl without password", kafkaArgs("--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-user", "u"), nil, "OUTBOX_KAFKA_SASL_PASSWORD: is empty"},
		{"kafka bad compression", kafkaArgs("--kafka-compression", "brotli"), nil, "--kafka-compression (OUTBOX_KAFKA_COMPRESSION): \"brotli\" is not one of"},
		{"kafka concurrency too high", kafkaArgs("--kafka-concurrency", "1000"), nil, "--kafka-concurrency (OUTBOX_KAFKA_CONCURRENCY): 1000 is above 64"},
		{"kafka delivery timeout too short", kafkaArgs("--kafka-delivery-timeout", "10ms"), nil, "--kafka-delivery-timeout (OUTBOX_KAFKA_DELIVERY_TIMEOUT): 10ms is below 1s"},
		{"kafka bad max message bytes", kafkaArgs(), map[string]string{"OUTBOX_KAFKA_MAX_MESSAGE_BYTES": "lots"}, "OUTBOX_KAFKA_MAX_MESSAGE_BYTES: invalid value for --kafka-max-message-bytes: not an integer"},
		{"kafka missing CA file", kafkaArgs("--kafka-ca-file", "/nonexistent/ca.pem"), nil, "--kafka-ca-file (OUTBOX_KAFKA_CA_FILE): cannot read the file"},
		{"kafka CA file without a certificate", kafkaArgs("--kafka-ca-file", caFile), nil, "--kafka-ca-file (OUTBOX_KAFKA_CA_FILE): holds no PEM certificate"},
		{"kafka cert without key", kafkaArgs("--kafka-cert-file", caFile), nil, "--kafka-cert-file (OUTBOX_KAFKA_CERT_FILE) and --kafka-key-file (OUTBOX_KAFKA_KEY_FILE): give both or neither"},
		{"kafka bad cert", kafkaArgs("--kafka-cert-file", caFile, "--kafka-key-file", caFile), nil, "cannot load the certificate and its key"},

		{"nats bad url", relay("--transport", "nats", "--nats-url", "http://app:"+secret+"@h:4222"), nil, "--nats-url (OUTBOX_NATS_URL): "},
		{"nats two credentials", relay("--transport", "nats", "--nats-user", "app"), map[string]string{"OUTBOX_NATS_PASSWORD": secret, "OUTBOX_NATS_TOKEN": secret}, "OUTBOX_NATS_TOKEN: is set together with"},
		{"nats password without user", relay("--transport", "nats"), map[string]string{"OUTBOX_NATS_PASSWORD": secret}, "--nats-user (OUTBOX_NATS_USER): is empty while Password is set"},
		{"nats bad subject", relay("--transport", "nats", "--nats-subject", "orders.*"), nil, "--nats-subject (OUTBOX_NATS_SUBJECT): "},
		{"nats max pending too high", relay("--transport", "nats", "--nats-max-pending", "100000000"), nil, "--nats-max-pending (OUTBOX_NATS_MAX_PENDING): "},
		{"nats bad nkey seed", relay("--transport", "nats"), map[string]string{"OUTBOX_NATS_NKEY_SEED": "SU" + secret}, "OUTBOX_NATS_NKEY_SEED: "},
		{"nats bad ack timeout", relay("--transport", "nats", "--nats-ack-timeout", "soon"), nil, "--nats-ack-timeout (OUTBOX_NATS_ACK_TIMEOUT): not a duration"},

		{"rabbitmq without url", relay("--transport", "rabbitmq"), nil, "--rabbitmq-url (OUTBOX_RABBITMQ_URL): is empty"},
		{"rabbitmq bad scheme", relay("--transport", "rabbitmq", "--rabbitmq-url", "http://guest:"+secret+"@127.0.0.1:5672/"), nil, "--rabbitmq-url (OUTBOX_RABBITMQ_URL): scheme \"http\" is not amqp or amqps"},
		{"rabbitmq url from env", relay(), map[string]string{"OUTBOX_TRANSPORT": "rabbitmq", "OUTBOX_RABBITMQ_URL": "amqp://guest:" + secret + "@"}, "--rabbitmq-url (OUTBOX_RABBITMQ_URL): has no host"},
		{"rabbitmq key password without key", relay("--transport", "rabbitmq", "--rabbitmq-url", "amqps://h/"), map[string]string{"OUTBOX_RABBITMQ_KEY_PASSWORD": secret}, "OUTBOX_RABBITMQ_KEY_PASSWORD: is set without KeyFile"},
		{"rabbitmq heartbeat too short", relay("--transport", "rabbitmq", "--rabbitmq-url", "amqp://h/", "--rabbitmq-heartbeat", "10ms"), nil, "--rabbitmq-heartbeat (OUTBOX_RABBITMQ_HEARTBEAT): is below 1s"},
		{"rabbitmq TLS files on amqp", relay("--transport", "rabbitmq", "--rabbitmq-url", "amqp://h/", "--rabbitmq-ca-file", caFile), nil, "--rabbitmq-url (OUTBOX_RABBITMQ_URL): uses amqp:// while TLS settings are given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.vars, tt.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want exactly one line", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.want)
			}
			if strings.Contains(stderr, secret) {
				t.Errorf("stderr shows a secret: %q", stderr)
			}
		})
	}
}

// parseTransport parses args and vars as the relay does and returns the transport flags.
func parseTransport(t *testing.T, vars map[string]string, args ...string) *transportFlags {
	t.Helper()
	f := newFlags("outbox relay", relayUsage)
	tf := addTransportFlags(f)
	e := &env{stdout: &strings.Builder{}, stderr: &strings.Builder{}, getenv: func(k string) string { return vars[k] }}
	if err := f.parse(e, args, false); err != nil {
		t.Fatal(err)
	}
	if err := tf.check("outbox relay"); err != nil {
		t.Fatal(err)
	}
	return tf
}

// Flags and variables reach the Kafka config: lists split, SASL and TLS built; a flag wins over
// its variable.
func TestKafkaFlagsMakeTheConfig(t *testing.T) {
	tf := parseTransport(t, map[string]string{
		"OUTBOX_TRANSPORT":              "kafka",
		"OUTBOX_KAFKA_BROKERS":          " 10.0.0.1:9092 , 10.0.0.2:9093",
		"OUTBOX_KAFKA_TOPIC":            "from-env",
		"OUTBOX_KAFKA_SASL_MECHANISM":   "scram-sha-256",
		"OUTBOX_KAFKA_SASL_USER":        "relay",
		"OUTBOX_KAFKA_SASL_PASSWORD":    "kafka-pw",
		"OUTBOX_KAFKA_COMPRESSION":      "zstd",
		"OUTBOX_KAFKA_DELIVERY_TIMEOUT": "7s",
	}, "--kafka-topic", "events", "--kafka-routes", "ORDER_PLACED=orders, USER_CREATED=users", "--kafka-raw-payload",
		"--kafka-client-id", "relay-1", "--kafka-max-message-bytes", "500000", "--kafka-concurrency", "8", "--kafka-dial-timeout", "2s", "--kafka-tls")
	cfg, err := tf.kafka.config("outbox relay", tf.f)
	if err != nil {
		t.Fatal(err)
	}
	want := kafka.Config{
		Connection: kafka.Connection{
			Brokers: []string{"10.0.0.1:9092", "10.0.0.2:9093"}, ClientID: "relay-1", DialTimeout: 2 * time.Second,
			SASL: &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "relay", Password: "kafka-pw"},
		},
		Topic:           "events",
		Routes:          map[string]string{"ORDER_PLACED": "orders", "USER_CREATED": "users"},
		RawPayload:      true,
		MaxMessageBytes: 500000, Compression: "zstd", Concurrency: 8, DeliveryTimeout: 7 * time.Second,
	}
	if cfg.TLS == nil {
		t.Error("--kafka-tls left TLS off")
	}
	cfg.TLS = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("config\n%v\nwant\n%v", cfg, want)
	}
	if *cfg.SASL != *want.SASL {
		t.Errorf("SASL %v, want %v", cfg.SASL, want.SASL)
	}
	// The transport is built from it (building sends nothing).
	tr, closeTr, err := tf.open(t.Context(), "outbox relay", nil, zap.NewNop(), outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeTr()
	if _, ok := tr.(*kafka.Transport); !ok || !strings.Contains(describe(tr), "kafka.Transport") || strings.Contains(describe(tr), "kafka-pw") {
		t.Errorf("built %T described as %q, want a kafka.Transport without the password", tr, describe(tr))
	}
}

func TestNATSAndRabbitMQFlagsMakeTheConfig(t *testing.T) {
	tf := parseTransport(t, map[string]string{"OUTBOX_NATS_TOKEN": "nats-tok", "OUTBOX_NATS_STREAM": "ORDERS"},
		"--transport", "nats", "--nats-url", "nats://10.0.0.1:4222,nats://10.0.0.2:4222", "--nats-subject", "events.{type}",
		"--nats-max-pending", "64", "--nats-ack-timeout", "2s", "--nats-keep-key-order", "--nats-raw-payload")
	n := tf.nats
	if n.URL != "nats://10.0.0.1:4222,nats://10.0.0.2:4222" || n.Token != "nats-tok" || n.Stream != "ORDERS" || n.Subject != "events.{type}" ||
		n.MaxPending != 64 || n.AckTimeout != 2*time.Second || !n.KeepKeyOrder || !n.RawPayload {
		t.Errorf("nats config %v", n)
	}

	tf = parseTransport(t, map[string]string{"OUTBOX_RABBITMQ_URL": "amqp://relay:rmq-pw@10.0.0.1:5672/app"},
		"--transport", "rabbitmq", "--rabbitmq-exchange", "events", "--rabbitmq-routing-key", "orders.{type}", "--rabbitmq-keep-key-order",
		"--rabbitmq-max-message-bytes", "1000000", "--rabbitmq-reconnect-max", "30s")
	r := tf.rabbitmq
	if r.URL != "amqp://relay:rmq-pw@10.0.0.1:5672/app" || r.Exchange != "events" || r.RoutingKey != "orders.{type}" || !r.KeepKeyOrder ||
		r.MaxMessageBytes != 1000000 || r.ReconnectMax != 30*time.Second {
		t.Errorf("rabbitmq config %v", r)
	}
	tr, closeTr, err := tf.open(t.Context(), "outbox relay", nil, zap.NewNop(), outbox.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeTr()
	if d := describe(tr); !strings.Contains(d, "rabbitmq.Transport") || strings.Contains(d, "rmq-pw") {
		t.Errorf("built %T described as %q, want a rabbitmq.Transport without the password", tr, d)
	}
}

func TestRetryHorizon(t *testing.T) {
	for _, tt := range []struct {
		cfg  outbox.Config
		want time.Duration
	}{
		{outbox.Config{}, 15*time.Second + 5*time.Minute},
		{outbox.Config{Lease: 10 * time.Minute, Backoff: outbox.Backoff{Max: time.Minute}}, 10 * time.Minute},
		{outbox.Config{Lease: time.Minute, PublishTimeout: 20 * time.Second, Backoff: outbox.Backoff{Max: 10 * time.Second}}, time.Minute},
		{outbox.Config{Lease: 10 * time.Second, Backoff: outbox.Backoff{Max: time.Minute}}, 5*time.Second + time.Minute},
	} {
		if got := retryHorizon(tt.cfg); got != tt.want {
			t.Errorf("retryHorizon(%+v) = %v, want %v", tt.cfg, got, tt.want)
		}
	}
}
