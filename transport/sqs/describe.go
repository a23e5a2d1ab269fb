package sqs

import (
	"strings"

	"github.com/txoutbox/outbox"
)

// MessagingSystem names the transport for tracing (OpenTelemetry's messaging.system).
func (t *Transport) MessagingSystem() string { return "aws_sqs" }

// Destination returns the name of the queue m goes to (the last part of its URL), or "" when
// no route claims it. It lets the tracing middleware name its spans "publish <queue>".
func (t *Transport) Destination(m *outbox.Message) string {
	dest, err := t.router.destination(m)
	if err != nil {
		return ""
	}
	return dest[strings.LastIndexByte(dest, '/')+1:]
}
