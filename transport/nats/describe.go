package nats

import "github.com/txoutbox/outbox"

// MessagingSystem names the transport for tracing (OpenTelemetry's messaging.system).
func (t *Transport) MessagingSystem() string { return "nats" }

// Destination returns the subject m is published to, or "" when it cannot be routed. It lets
// the tracing middleware name its spans "publish <subject>".
func (t *Transport) Destination(m *outbox.Message) string {
	subject, err := t.router.subject(m)
	if err != nil {
		return ""
	}
	return subject
}
