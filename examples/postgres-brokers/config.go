package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// config is what the example reads from its flags and the environment.
type config struct {
	Transport string // -transport: kafka, nats or rabbitmq, required
	KafkaFake bool   // -kafka-fake: run an in-process Kafka cluster (franz-go's kfake) instead of a real one

	PostgresURL string // OUTBOX_POSTGRES_URL, required
	Schema      string // OUTBOX_POSTGRES_SCHEMA, default "public": where the users and outbox tables go

	KafkaBrokers []string // OUTBOX_KAFKA_BROKERS, host:port[,host:port...]; required for kafka without -kafka-fake
	KafkaTopic   string   // OUTBOX_KAFKA_TOPIC, default "users"; on a real cluster it must exist (or be auto-created)

	NATSURL    string // OUTBOX_NATS_URL, default nats://127.0.0.1:4222
	NATSStream string // OUTBOX_NATS_STREAM, default "USERS"; created with subjects <stream>.> if missing

	RabbitMQURL   string // OUTBOX_RABBITMQ_URL, required for rabbitmq: amqp://user:password@host:5672/vhost
	RabbitMQQueue string // OUTBOX_RABBITMQ_QUEUE, default "users"; declared durable if missing
}

// errMissing is a setup problem, not a failure: the example says what to set and exits 2.
type errMissing struct{ msg string }

func (e *errMissing) Error() string { return e.msg }

func isMissing(err error) bool {
	var m *errMissing
	return errors.As(err, &m)
}

const usage = "usage: postgres-brokers -transport kafka|nats|rabbitmq [-kafka-fake]; " +
	"set OUTBOX_POSTGRES_URL (e.g. postgres://user@localhost:5432/app), and for kafka OUTBOX_KAFKA_BROKERS " +
	"(or -kafka-fake), for rabbitmq OUTBOX_RABBITMQ_URL (e.g. amqp://guest:guest@127.0.0.1:5672/); " +
	"nats uses OUTBOX_NATS_URL, default nats://127.0.0.1:4222"

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	c := config{
		PostgresURL:   getenv("OUTBOX_POSTGRES_URL"),
		Schema:        getenv("OUTBOX_POSTGRES_SCHEMA"),
		KafkaTopic:    or(getenv("OUTBOX_KAFKA_TOPIC"), "users"),
		NATSURL:       or(getenv("OUTBOX_NATS_URL"), "nats://127.0.0.1:4222"),
		NATSStream:    or(getenv("OUTBOX_NATS_STREAM"), "USERS"),
		RabbitMQURL:   getenv("OUTBOX_RABBITMQ_URL"),
		RabbitMQQueue: or(getenv("OUTBOX_RABBITMQ_QUEUE"), "users"),
	}
	for _, b := range strings.Split(getenv("OUTBOX_KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
	}
	fs := flag.NewFlagSet("postgres-brokers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Transport, "transport", "", "broker to publish to and consume from: kafka, nats or rabbitmq")
	fs.BoolVar(&c.KafkaFake, "kafka-fake", false, "with -transport kafka: start an in-process Kafka cluster (franz-go's kfake)")
	if err := fs.Parse(args); err != nil {
		return c, &errMissing{err.Error() + "; " + usage}
	}
	if fs.NArg() > 0 {
		return c, &errMissing{fmt.Sprintf("unexpected argument %q; %s", fs.Arg(0), usage)}
	}
	var missing []string
	switch c.Transport {
	case "":
		missing = append(missing, "-transport")
	case "kafka":
		if len(c.KafkaBrokers) == 0 && !c.KafkaFake {
			missing = append(missing, "OUTBOX_KAFKA_BROKERS (or -kafka-fake)")
		}
	case "nats":
	case "rabbitmq":
		if c.RabbitMQURL == "" {
			missing = append(missing, "OUTBOX_RABBITMQ_URL")
		}
	default:
		return c, &errMissing{fmt.Sprintf("-transport %q is not kafka, nats or rabbitmq", c.Transport)}
	}
	if c.KafkaFake && c.Transport != "kafka" {
		return c, &errMissing{"-kafka-fake goes with -transport kafka only"}
	}
	if c.KafkaFake && len(c.KafkaBrokers) > 0 {
		return c, &errMissing{"give OUTBOX_KAFKA_BROKERS or -kafka-fake, not both"}
	}
	if c.PostgresURL == "" {
		missing = append([]string{"OUTBOX_POSTGRES_URL"}, missing...)
	}
	if len(missing) > 0 {
		return c, &errMissing{fmt.Sprintf("%s not set: %s", strings.Join(missing, " and "), usage)}
	}
	return c, nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
