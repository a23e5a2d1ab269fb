package rabbitmq

import "github.com/txoutbox/outbox"

// MessagingSystem names the transport for tracing (OpenTelemetry's messaging.system).
func (t *Transport) MessagingSystem() string { return "rabbitmq" }

// Destination returns the exchange m is published to ("amq.default" for the default exchange,
// as OpenTelemetry's conventions name it), or "" when m cannot be routed. It lets the tracing
// middleware name its spans "publish <exchange>".
func (t *Transport) Destination(m *outbox.Message) string {
	exchange, _, err := t.destination(m)
	switch {
	case err != nil:
		return ""
	case exchange == "":
		return "amq.default"
	}
	return exchange
}
