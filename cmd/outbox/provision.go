package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
	"github.com/txoutbox/outbox/transport/sqs"
)

const provisionUsage = `Usage: outbox provision --transport nats|rabbitmq|sqs|kafka [transport flags] [provision flags]
       outbox provision --print --transport nats|rabbitmq|sqs|kafka [transport flags] [provision flags]

Creates what the relay publishes to and a consumer reads, with the transport flags the relay is
given (the same connection, subject, exchange or queue):
  nats      the JetStream stream --nats-stream capturing what --nats-subject makes ("outbox.>" for
            the default outbox.{type}), file storage, a duplicate window of 10m (above the relay's
            retry horizon with its defaults, 5m15s); with --nats-durable, a durable pull consumer
            with explicit acks
  rabbitmq  the exchange --rabbitmq-exchange (if any, topic unless --rabbitmq-exchange-type), the
            quorum queue --rabbitmq-queue bound to it with the routing key's pattern, and a
            dead-letter exchange and queue QUEUE.dead, named by the queue's x-dead-letter-exchange,
            with x-delivery-limit 5
  sqs       the queue --sqs-queue-url (a name or URL; .fifo makes a FIFO queue with content-based
            deduplication off) and its dead-letter queue NAME-dead (NAME-dead.fifo), with a
            RedrivePolicy of maxReceiveCount 5; it prints the queue's URL
  kafka     the topic --kafka-topic, the topics of --kafka-routes and --kafka-extra-topics, with
            --kafka-partitions and --kafka-replication-factor (default: the brokers' defaults)
            and max.message.bytes at --kafka-max-message-bytes; an existing topic whose
            max.message.bytes is smaller is a conflict
It is idempotent: what exists as asked is reported and left alone. An object that exists with
other settings is never changed: it is reported, and the command exits 1.

--print prints what it would create as JSON without connecting: JetStream's stream and consumer
configs, a RabbitMQ definitions file (rabbitmqctl import_definitions), SQS's CreateQueue
attributes, or the Kafka topics.`

// provisionFlags are the provision command's own flags, beside the transport's. Each is named
// after its transport, so one given with another --transport is refused.
type provisionFlags struct {
	print   bool
	timeout time.Duration

	nats struct {
		durable       string
		ackWait       time.Duration
		maxDeliver    int
		maxAckPending int
		duplicates    time.Duration
		replicas      int
		memory        bool
	}
	rabbitmq struct {
		queue, exchangeType, bindingKey string
		classic, noDeadLetter           bool
		deliveryLimit                   int
	}
	sqs struct {
		visibility      time.Duration
		maxReceiveCount int
		noDeadLetter    bool
	}
	kafka struct {
		partitions        int
		replicationFactor int
		extraTopics       string
	}
}

func addProvisionFlags(f *flags) *provisionFlags {
	p := &provisionFlags{}
	fs := f.fs
	fs.BoolVar(&p.print, "print", false, "print what would be created, as JSON, without connecting")
	fs.DurationVar(&p.timeout, "timeout", time.Minute, "bound on the whole command")
	fs.StringVar(&p.nats.durable, "nats-durable", "", "NATS: also create this durable pull consumer (AckExplicit) on the stream")
	fs.DurationVar(&p.nats.ackWait, "nats-ack-wait", nats.DefaultProvisionAckWait, "NATS: the durable consumer's AckWait")
	fs.IntVar(&p.nats.maxDeliver, "nats-max-deliver", nats.DefaultMaxDeliver, "NATS: the durable consumer's MaxDeliver (-1: no limit)")
	fs.IntVar(&p.nats.maxAckPending, "nats-max-ack-pending", 0, "NATS: the durable consumer's MaxAckPending (1 for a consumer that keeps key order; 0: the server's)")
	fs.DurationVar(&p.nats.duplicates, "nats-duplicates", nats.DefaultDuplicates, "NATS: the stream's duplicate window; keep it above the relay's retry horizon")
	fs.IntVar(&p.nats.replicas, "nats-replicas", 1, "NATS: the stream's replicas")
	fs.BoolVar(&p.nats.memory, "nats-memory-storage", false, "NATS: keep the stream in memory instead of files")
	fs.StringVar(&p.rabbitmq.queue, "rabbitmq-queue", "", "RabbitMQ: the queue to declare and bind (required)")
	fs.StringVar(&p.rabbitmq.exchangeType, "rabbitmq-exchange-type", rabbitmq.DefaultExchangeType, "RabbitMQ: the type of --rabbitmq-exchange: topic, direct, fanout or headers")
	fs.StringVar(&p.rabbitmq.bindingKey, "rabbitmq-binding-key", "", `RabbitMQ: the binding key (default: the routing key template with {type} and {key} words as "#")`)
	fs.BoolVar(&p.rabbitmq.classic, "rabbitmq-classic", false, "RabbitMQ: classic queues instead of quorum queues (no delivery limit)")
	fs.IntVar(&p.rabbitmq.deliveryLimit, "rabbitmq-delivery-limit", 0, fmt.Sprintf("RabbitMQ: the quorum queue's x-delivery-limit (0: %d)", rabbitmq.DefaultDeliveryLimit))
	fs.BoolVar(&p.rabbitmq.noDeadLetter, "rabbitmq-no-dead-letter", false, "RabbitMQ: no dead-letter exchange and queue")
	fs.DurationVar(&p.sqs.visibility, "sqs-visibility-timeout", sqs.DefaultVisibilityTimeout, "SQS: the queue's VisibilityTimeout (whole seconds)")
	fs.IntVar(&p.sqs.maxReceiveCount, "sqs-max-receive-count", 0, fmt.Sprintf("SQS: the RedrivePolicy's maxReceiveCount (0: %d)", sqs.DefaultMaxReceiveCount))
	fs.BoolVar(&p.sqs.noDeadLetter, "sqs-no-dead-letter", false, "SQS: no dead-letter queue or redrive policy")
	fs.IntVar(&p.kafka.partitions, "kafka-partitions", -1, "Kafka: each topic's partitions (-1: the brokers' num.partitions)")
	fs.IntVar(&p.kafka.replicationFactor, "kafka-replication-factor", -1, "Kafka: each topic's replicas (-1: the brokers' default.replication.factor)")
	fs.StringVar(&p.kafka.extraTopics, "kafka-extra-topics", "", "Kafka: more topics to create, comma-separated")
	// A Plan's error names its config field; report it under the flag the user wrote.
	for component, fields := range map[string]map[string]string{
		"nats provision": {"Durable": "nats-durable", "AckWait": "nats-ack-wait", "MaxDeliver": "nats-max-deliver",
			"MaxAckPending": "nats-max-ack-pending", "Duplicates": "nats-duplicates", "Replicas": "nats-replicas"},
		"rabbitmq provision": {"Queue": "rabbitmq-queue", "ExchangeType": "rabbitmq-exchange-type",
			"BindingKey": "rabbitmq-binding-key", "DeliveryLimit": "rabbitmq-delivery-limit"},
		"sqs provision":   {"VisibilityTimeout": "sqs-visibility-timeout", "MaxReceiveCount": "sqs-max-receive-count"},
		"kafka provision": {"Topics": "kafka-extra-topics", "Partitions": "kafka-partitions", "ReplicationFactor": "kafka-replication-factor"},
	} {
		for field, flag := range fields {
			f.fields[[2]string{component, field}] = "--" + flag
		}
	}
	return p
}

func runProvision(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox provision"
	f := newFlags(cmd, provisionUsage)
	tf := addTransportFlags(f)
	pf := addProvisionFlags(f)
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	if tf.kind == "memory" {
		return usagef(cmd, "--transport memory: provisioning is for nats, rabbitmq, sqs and kafka (the memory transport has nothing to create)")
	}
	if err := tf.check(cmd); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, pf.timeout)
	defer cancel()

	p, err := provisioningOf(cmd, f, tf, pf)
	if err != nil {
		return err
	}
	if pf.print {
		plan, err := p.plan()
		if err != nil {
			return f.configError(err)
		}
		out, err := json.MarshalIndent(plan, "", "  ")
		if err != nil {
			return failed(cmd, err)
		}
		fmt.Fprintln(e.stdout, string(out))
		return nil
	}
	objects, queueURL, err := p.run(ctx)
	for _, o := range objects {
		fmt.Fprintln(e.stdout, o.String())
	}
	if queueURL != "" {
		fmt.Fprintf(e.stdout, "queue URL: %s\n", queueURL)
	}
	if err != nil {
		if errors.Is(err, nats.ErrConflict) || errors.Is(err, rabbitmq.ErrConflict) || errors.Is(err, sqs.ErrConflict) || errors.Is(err, kafka.ErrConflict) {
			return failed(cmd, fmt.Errorf("%w; change or remove it with the broker's tools, or give provision its settings", err))
		}
		return failed(cmd, err)
	}
	return nil
}

// provisioning is one transport's Provision, from the command's flags: its plan, or the run
// (the objects it looked at, the queue URL where the broker gives one, and its error).
type provisioning struct {
	plan func() (any, error)
	run  func(ctx context.Context) ([]outbox.ProvisionObject, string, error)
}

// provisioningOf builds the chosen transport's provisioning from the flags, checked already by
// tf.check; what only provisioning needs is checked here.
func provisioningOf(cmd string, f *flags, tf *transportFlags, pf *provisionFlags) (provisioning, error) {
	switch tf.kind {
	case "nats":
		cfg, _ := tf.natsConfig() // checked
		if cfg.Stream == "" {
			return provisioning{}, usagef(cmd, "%s: is empty; give the name of the stream to create (the relay checks its duplicate window when given it too)", f.describe("nats-stream"))
		}
		pc := nats.ProvisionConfig{
			Transport: cfg, Durable: pf.nats.durable, AckWait: pf.nats.ackWait, MaxDeliver: pf.nats.maxDeliver,
			MaxAckPending: pf.nats.maxAckPending, Duplicates: pf.nats.duplicates, Replicas: pf.nats.replicas,
			MemoryStorage: pf.nats.memory,
		}
		return provisioning{
			plan: func() (any, error) { return pc.Plan() },
			run: func(ctx context.Context) ([]outbox.ProvisionObject, string, error) {
				rep, err := nats.Provision(ctx, pc)
				return rep.Objects, "", err
			},
		}, nil
	case "rabbitmq":
		cfg, _ := tf.rabbitmqConfig(cmd) // checked
		if pf.rabbitmq.queue == "" {
			return provisioning{}, usagef(cmd, "--rabbitmq-queue: is empty; give the queue a consumer will read")
		}
		pc := rabbitmq.ProvisionConfig{
			Transport: cfg, Queue: pf.rabbitmq.queue, ExchangeType: pf.rabbitmq.exchangeType,
			BindingKey: pf.rabbitmq.bindingKey, Classic: pf.rabbitmq.classic,
			DeliveryLimit: pf.rabbitmq.deliveryLimit, NoDeadLetter: pf.rabbitmq.noDeadLetter,
		}
		return provisioning{
			plan: func() (any, error) { return pc.Plan() },
			run: func(ctx context.Context) ([]outbox.ProvisionObject, string, error) {
				rep, err := rabbitmq.Provision(ctx, pc)
				return rep.Objects, "", err
			},
		}, nil
	case "sqs":
		cfg, _ := tf.sqsConfig(cmd) // checked
		pc := sqs.ProvisionConfig{
			Transport: cfg, VisibilityTimeout: pf.sqs.visibility,
			MaxReceiveCount: pf.sqs.maxReceiveCount, NoDeadLetter: pf.sqs.noDeadLetter,
		}
		return provisioning{
			plan: func() (any, error) { return pc.Plan() },
			run: func(ctx context.Context) ([]outbox.ProvisionObject, string, error) {
				rep, err := sqs.Provision(ctx, pc)
				return rep.Objects, rep.QueueURL, err
			},
		}, nil
	case "kafka":
		cfg, _ := tf.kafka.config(cmd, f) // checked
		if pf.kafka.partitions < -1 || pf.kafka.partitions == 0 || pf.kafka.partitions > math.MaxInt32 {
			return provisioning{}, usagef(cmd, "--kafka-partitions: %d is not a partition count (-1 or at least 1)", pf.kafka.partitions)
		}
		if pf.kafka.replicationFactor < -1 || pf.kafka.replicationFactor == 0 || pf.kafka.replicationFactor > math.MaxInt16 {
			return provisioning{}, usagef(cmd, "--kafka-replication-factor: %d is not a replica count (-1 or at least 1)", pf.kafka.replicationFactor)
		}
		var extra []string
		for _, name := range strings.Split(pf.kafka.extraTopics, ",") {
			if name = strings.TrimSpace(name); name != "" {
				extra = append(extra, name)
			}
		}
		pc := kafka.ProvisionConfig{
			Transport: cfg, Topics: extra,
			Partitions: int32(pf.kafka.partitions), ReplicationFactor: int16(pf.kafka.replicationFactor),
		}
		return provisioning{
			plan: func() (any, error) { return pc.Plan() },
			run: func(ctx context.Context) ([]outbox.ProvisionObject, string, error) {
				rep, err := kafka.Provision(ctx, pc)
				return rep.Objects, "", err
			},
		}, nil
	}
	return provisioning{}, usagef(cmd, "--transport %s: nothing to provision", tf.kind)
}
