package memory

import "github.com/txoutbox/outbox"

// MessagingSystem names the transport for tracing (OpenTelemetry's messaging.system).
func (t *Transport) MessagingSystem() string { return "memory" }

// Destination returns "memory": the transport has one destination, the process.
func (t *Transport) Destination(*outbox.Message) string { return "memory" }
