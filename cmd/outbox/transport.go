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
	kind string
	sqs  sqs.Config
	f    *flags
}

func addTransportFlags(f *flags) *transportFlags {
	t := &transportFlags{kind: "sqs", f: f}
	addSettings(f, "sqs", t, transportSettings())
	return t
}

// transportHelp is appended to the relay's --help.
const transportHelp = `
SQS credentials come from OUTBOX_SQS_ACCESS_KEY_ID and OUTBOX_SQS_SECRET_ACCESS_KEY (and
OUTBOX_SQS_SESSION_TOKEN) when set, otherwise from the AWS default chain (AWS_ACCESS_KEY_ID,
shared profile, SSO, IAM role). They are never accepted as flags.`

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

// check validates the transport flags without building anything.
func (t *transportFlags) check(cmd string, e *env) error {
	switch t.kind {
	case "sqs":
		_, err := t.sqsConfig(cmd)
		return err
	case "memory":
		if t.sqs.QueueURL != "" || t.sqs.Endpoint != "" {
			return usagef(cmd, "--sqs-queue-url and --sqs-endpoint do not apply to --transport memory")
		}
		return nil
	}
	return usagef(cmd, "--transport (OUTBOX_TRANSPORT): not sqs or memory")
}

// open builds the transport. The returned close releases what it holds.
func (t *transportFlags) open(ctx context.Context, cmd string, e *env) (core.Transport, func(), error) {
	if t.kind == "memory" {
		return &printTransport{w: e.stdout}, func() {}, nil
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
