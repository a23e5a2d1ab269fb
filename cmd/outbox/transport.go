package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/transport/kafka"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
	"github.com/txoutbox/outbox/transport/sqs"
)

// transportKinds are the values of --transport; each but memory has flags named after it
// (--sqs-…, --kafka-…, --nats-…, --rabbitmq-…).
var transportKinds = []string{"sqs", "kafka", "nats", "rabbitmq", "memory"}

// transportFlags choose and configure the broker the relay publishes to.
type transportFlags struct {
	kind     string
	sqs      sqs.Config
	kafka    kafkaFlags
	nats     nats.Config
	rabbitmq rabbitmq.Config
	f        *flags
}

func addTransportFlags(f *flags) *transportFlags {
	t := &transportFlags{kind: "sqs", f: f}
	addSettings(f, "", t, transportSettings())
	addSettings(f, "sqs", &t.sqs, sqs.Settings())
	addSettings(f, "kafka", &t.kafka, kafkaSettings())
	addSettings(f, "nats", &t.nats, nats.Settings())
	addSettings(f, "rabbitmq", &t.rabbitmq, rabbitmq.Settings())
	return t
}

// transportHelp is appended to the relay's --help.
const transportHelp = `
--transport picks the broker: sqs (the default), kafka, nats, rabbitmq, or memory to print each
message's envelope on stdout. Only the flags of the chosen one may be given.

Credentials are never flags; they come from the environment only: OUTBOX_SQS_ACCESS_KEY_ID and
OUTBOX_SQS_SECRET_ACCESS_KEY (and OUTBOX_SQS_SESSION_TOKEN), else the AWS default chain
(AWS_ACCESS_KEY_ID, shared profile, SSO, IAM role); OUTBOX_KAFKA_SASL_PASSWORD;
OUTBOX_NATS_PASSWORD, OUTBOX_NATS_TOKEN, OUTBOX_NATS_NKEY_SEED or OUTBOX_NATS_CREDENTIALS;
OUTBOX_RABBITMQ_KEY_PASSWORD. A RabbitMQ password goes in OUTBOX_RABBITMQ_URL, which, like
every flag, can come from the environment.`

// check validates the transport flags without building anything.
func (t *transportFlags) check(cmd string) error {
	if !slices.Contains(transportKinds, t.kind) {
		return usagef(cmd, "--transport (OUTBOX_TRANSPORT): not one of %s", strings.Join(transportKinds, ", "))
	}
	// A flag of another transport is an error rather than silently ignored.
	for _, other := range transportKinds {
		if other == t.kind || other == "memory" {
			continue
		}
		var given []string
		for name := range t.f.given {
			if strings.HasPrefix(name, other+"-") {
				given = append(given, name)
			}
		}
		if len(given) > 0 {
			slices.Sort(given)
			return usagef(cmd, "%s does not apply to --transport %s", t.f.describe(given[0]), t.kind)
		}
	}
	switch t.kind {
	case "sqs":
		_, err := t.sqsConfig(cmd)
		return err
	case "kafka":
		_, err := t.kafka.config(cmd, t.f)
		return err
	case "nats":
		_, err := t.natsConfig()
		return err
	case "rabbitmq":
		_, err := t.rabbitmqConfig(cmd)
		return err
	}
	return nil
}

// sqsConfig validates the SQS transport's config; problems are usage errors naming the flag.
func (t *transportFlags) sqsConfig(cmd string) (sqs.Config, error) {
	if t.sqs.QueueURL == "" {
		return t.sqs, usagef(cmd, "%s: is empty; give the SQS queue's URL or name (or --transport memory to try things out)", t.f.describe("sqs-queue-url"))
	}
	if err := t.sqs.Validate(); err != nil {
		return t.sqs, t.f.configError(err) // sqs errors name the field and never repeat a secret
	}
	return t.sqs, nil
}

// natsConfig validates the NATS transport's config (its URL defaults to nats://127.0.0.1:4222).
func (t *transportFlags) natsConfig() (nats.Config, error) {
	if err := t.nats.Validate(); err != nil {
		return t.nats, t.f.configError(err) // nats errors name the field and never repeat a secret
	}
	return t.nats, nil
}

// rabbitmqConfig validates the RabbitMQ transport's config.
func (t *transportFlags) rabbitmqConfig(cmd string) (rabbitmq.Config, error) {
	if t.rabbitmq.URL == "" {
		return t.rabbitmq, usagef(cmd, "%s: is empty; give the broker's URL, amqp://USER:PASS@HOST:5672/VHOST", t.f.describe("rabbitmq-url"))
	}
	if err := t.rabbitmq.Validate(); err != nil {
		return t.rabbitmq, t.f.configError(err) // rabbitmq errors name the field and never repeat a secret
	}
	return t.rabbitmq, nil
}

// open builds the transport the relay with config rc publishes to. The returned close releases
// what it holds.
func (t *transportFlags) open(ctx context.Context, cmd string, e *env, log *zap.Logger, rc outbox.Config) (outbox.Transport, func(), error) {
	switch t.kind {
	case "memory":
		return &printTransport{w: e.stdout}, func() {}, nil
	case "kafka":
		cfg, err := t.kafka.config(cmd, t.f)
		if err != nil {
			return nil, nil, err
		}
		tr, err := kafka.New(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		return tr, func() { _ = tr.Close() }, nil
	case "nats":
		tr, err := t.openNATS(ctx, log, rc)
		if err != nil {
			return nil, nil, err
		}
		return tr, func() { _ = tr.Close() }, nil
	case "rabbitmq":
		cfg, err := t.rabbitmqConfig(cmd)
		if err != nil {
			return nil, nil, err
		}
		tr, err := rabbitmq.New(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		return tr, func() { _ = tr.Close() }, nil
	}
	cfg, err := t.sqsConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	tr, err := sqs.New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return tr, func() { _ = tr.Close() }, nil
}

// natsRetry spaces the relay's attempts to reach a NATS server that is down at start.
var natsRetry = outbox.Backoff{Initial: 500 * time.Millisecond, Max: 15 * time.Second, Multiplier: 2, Jitter: 0.2}

// openNATS connects to NATS. Unlike the other transports, which connect at their first publish,
// the NATS transport connects when it is built: a server that is unreachable or refuses the
// credentials at start is an outage like any other, so the relay waits for it (logging each
// failure) rather than exit, until ctx ends. With --nats-stream, the stream's duplicate window is
// checked against the relay's retry horizon, and a warning logged if it is shorter.
func (t *transportFlags) openNATS(ctx context.Context, log *zap.Logger, rc outbox.Config) (*nats.Transport, error) {
	cfg, err := t.natsConfig()
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	var tr *nats.Transport
	for attempt := 1; ; attempt++ {
		if tr, err = nats.New(ctx, cfg); err == nil {
			break
		}
		if !outbox.IsUnavailable(err) || ctx.Err() != nil {
			return nil, err
		}
		delay := natsRetry.Delay(attempt)
		log.Warn("nats: server unavailable at start; retrying", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", delay))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("nats: connect: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
	if cfg.Stream != "" {
		if err := tr.CheckStream(ctx, retryHorizon(rc)); err != nil {
			log.Warn("nats: stream check failed; publishing anyway", zap.Error(err))
		}
	}
	return tr, nil
}

// retryHorizon is the longest a relay with config c may take to publish a message again after
// a publish whose outcome it did not learn: its lease, or a publish timeout plus the longest
// backoff, whichever is longer (see transport/nats).
func retryHorizon(c outbox.Config) time.Duration {
	lease := c.Lease
	if lease == 0 {
		lease = outbox.DefaultLease
	}
	publish := c.PublishTimeout
	if publish == 0 {
		publish = lease / 2
	}
	backoff := c.Backoff.Max
	if backoff == 0 {
		backoff = outbox.DefaultBackoffMax
	}
	return max(lease, publish+backoff)
}

// printTransport is the "memory" transport of the relay command: it writes each message's
// envelope as one JSON line and keeps nothing, so a daemon trying things out never grows.
type printTransport struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printTransport) Publish(ctx context.Context, msgs []*outbox.Message) error {
	buf := make([]byte, 0, 512)
	failed := outbox.NewBatchError()
	for _, m := range msgs {
		var err error
		start := len(buf)
		if buf, err = backend.EncodeEnvelope(buf, m); err != nil {
			buf = buf[:start]
			failed.Add(m.ID, err) // EncodeEnvelope marks a corrupt message permanent
			continue
		}
		buf = append(buf, '\n')
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.w.Write(buf); err != nil {
		return fmt.Errorf("memory: write: %w", err)
	}
	return failed.ErrOrNil()
}
