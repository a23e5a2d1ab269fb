package kafka

import "github.com/txoutbox/outbox"

// MessagingSystem names the transport for tracing (OpenTelemetry's messaging.system).
func (t *Transport) MessagingSystem() string { return "kafka" }

// Destination returns the topic m goes to, or "" when no route claims it. It lets the tracing
// middleware name its spans "publish <topic>".
func (t *Transport) Destination(m *outbox.Message) string {
	topic, err := t.router.topic(m)
	if err != nil {
		return ""
	}
	return topic
}
