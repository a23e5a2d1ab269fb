package main

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/transport/sqs"
)

// transportFlags choose and configure the broker the relay publishes to.
type transportFlags struct {
	kind        string
	queueURL    string
	region      string
	endpoint    string
	group       string
	rawPayload  bool
	concurrency int
}

func addTransportFlags(f *flags) *transportFlags {
	t := &transportFlags{}
	f.fs.StringVar(&t.kind, "transport", "sqs", `"sqs", or "memory" to print each message's JSON envelope on stdout instead (for trying things out)`)
	f.env("transport", "OUTBOX_TRANSPORT")
	f.fs.StringVar(&t.queueURL, "sqs-queue-url", "", "SQS queue URL or name; a name ending in .fifo is a FIFO queue")
	f.env("sqs-queue-url", "OUTBOX_SQS_QUEUE_URL")
	f.fs.StringVar(&t.region, "sqs-region", "", "AWS region (default: AWS_REGION or the shared profile's)")
	f.env("sqs-region", "OUTBOX_SQS_REGION")
	f.fs.StringVar(&t.endpoint, "sqs-endpoint", "", "SQS endpoint, e.g. http://127.0.0.1:4566 for an emulator (default: AWS's)")
	f.env("sqs-endpoint", "OUTBOX_SQS_ENDPOINT")
	f.fs.StringVar(&t.group, "sqs-default-group", "", `FIFO MessageGroupId of messages without a key (default "outbox")`)
	f.env("sqs-default-group", "OUTBOX_SQS_DEFAULT_GROUP")
	f.fs.BoolVar(&t.rawPayload, "sqs-raw-payload", false, "send the payload alone as the body instead of the JSON envelope")
	f.env("sqs-raw-payload", "OUTBOX_SQS_RAW_PAYLOAD")
	f.fs.IntVar(&t.concurrency, "sqs-concurrency", 0, "SendMessageBatch calls in flight (default 8)")
	f.env("sqs-concurrency", "OUTBOX_SQS_CONCURRENCY")
	return t
}

// Credentials are read from the environment only, never from flags, which every user of the
// machine can read in the process list. Without them the AWS default chain applies.
const (
	envAccessKey    = "OUTBOX_SQS_ACCESS_KEY_ID"
	envSecretKey    = "OUTBOX_SQS_SECRET_ACCESS_KEY"
	envSessionToken = "OUTBOX_SQS_SESSION_TOKEN"
)

// transportHelp is appended to the relay's --help.
const transportHelp = `
SQS credentials come from ` + envAccessKey + ` and ` + envSecretKey + ` (and
` + envSessionToken + `) when set, otherwise from the AWS default chain
(AWS_ACCESS_KEY_ID, shared profile, SSO, IAM role). They are never accepted as flags.`

// sqsConfig builds and validates the SQS transport's config; problems are usage errors.
func (t *transportFlags) sqsConfig(cmd string, e *env) (sqs.Config, error) {
	cfg := sqs.Config{
		QueueURL:        t.queueURL,
		Region:          t.region,
		Endpoint:        t.endpoint,
		DefaultGroupID:  t.group,
		RawPayload:      t.rawPayload,
		Concurrency:     t.concurrency,
		AccessKeyID:     e.getenv(envAccessKey),
		SecretAccessKey: e.getenv(envSecretKey),
		SessionToken:    e.getenv(envSessionToken),
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usagef(cmd, "%v", err) // sqs errors name the field and never repeat a secret
	}
	return cfg, nil
}

// check validates the transport flags without building anything.
func (t *transportFlags) check(cmd string, e *env) error {
	switch t.kind {
	case "sqs":
		_, err := t.sqsConfig(cmd, e)
		return err
	case "memory":
		if t.queueURL != "" || t.endpoint != "" {
			return usagef(cmd, "--sqs-queue-url and --sqs-endpoint do not apply to --transport memory")
		}
		return nil
	}
	return usagef(cmd, "--transport (OUTBOX_TRANSPORT): %q is not sqs or memory", t.kind)
}

// open builds the transport. The returned close releases what it holds.
func (t *transportFlags) open(ctx context.Context, cmd string, e *env) (core.Transport, func(), error) {
	if t.kind == "memory" {
		return &printTransport{w: e.stdout}, func() {}, nil
	}
	cfg, err := t.sqsConfig(cmd, e)
	if err != nil {
		return nil, nil, err
	}
	tr, err := sqs.New(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return tr, func() { _ = tr.Close() }, nil
}

// printTransport is the "memory" transport of the relay command: it writes each message's
// envelope as one JSON line and keeps nothing, so a daemon trying things out never grows.
type printTransport struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printTransport) Publish(ctx context.Context, msgs []*core.Message) error {
	buf := make([]byte, 0, 512)
	failed := core.NewBatchError()
	for _, m := range msgs {
		var err error
		start := len(buf)
		if buf, err = core.EncodeEnvelope(buf, m); err != nil {
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
