package rabbitmq

import (
	"strconv"
	"time"

	"github.com/txoutbox/outbox/envconfig"
)

// Settings returns the OUTBOX_RABBITMQ_* environment variables of Config, in the vocabulary
// every component shares (envconfig.Setting): a program configured from its environment loads them
// with envconfig.LoadSettings, and the outbox command offers each as a flag of the same name
// (--rabbitmq-url), except KeyPassword, which it reads from the environment only. Route and TLS
// are for programs, not settings.
func Settings() []envconfig.Setting[Config] {
	return []envconfig.Setting[Config]{
		envconfig.StringSetting("OUTBOX_RABBITMQ_URL", "URL", "none", "broker URL: amqp://USER:PASS@HOST:5672/VHOST, amqps://… for TLS",
			func(c *Config) *string { return (*string)(&c.URL) }),
		envconfig.StringSetting("OUTBOX_RABBITMQ_EXCHANGE", "Exchange", `"" (the default exchange)`, "exchange to publish to; it must exist",
			func(c *Config) *string { return &c.Exchange }),
		envconfig.StringSetting("OUTBOX_RABBITMQ_ROUTING_KEY", "RoutingKey", DefaultRoutingKey, "routing key template: {type} and {key} are replaced per message",
			func(c *Config) *string { return &c.RoutingKey }),
		envconfig.BoolSetting("OUTBOX_RABBITMQ_RAW_PAYLOAD", "RawPayload", "false", "send the payload alone as the body instead of the JSON envelope",
			func(c *Config) *bool { return &c.RawPayload }),
		envconfig.IntSetting("OUTBOX_RABBITMQ_MAX_MESSAGE_BYTES", "MaxMessageBytes", strconv.Itoa(DefaultMaxMessageBytes), "largest body sent; set it to the broker's max_message_size",
			func(c *Config) *int { return &c.MaxMessageBytes }),
		envconfig.BoolSetting("OUTBOX_RABBITMQ_KEEP_KEY_ORDER", "KeepKeyOrder", "false", "keep each key's order within a batch and stop a key at its first failure (with the relay's ordered mode)",
			func(c *Config) *bool { return &c.KeepKeyOrder }),
		envconfig.StringSetting("OUTBOX_RABBITMQ_CA_FILE", "CAFile", "the system roots", "PEM file of the CAs that verify the broker (amqps)",
			func(c *Config) *string { return &c.CAFile }),
		envconfig.StringSetting("OUTBOX_RABBITMQ_CERT_FILE", "CertFile", "none", "PEM client certificate (amqps)",
			func(c *Config) *string { return &c.CertFile }),
		envconfig.StringSetting("OUTBOX_RABBITMQ_KEY_FILE", "KeyFile", "none", "PEM key of the client certificate",
			func(c *Config) *string { return &c.KeyFile }),
		envconfig.SecretSetting("OUTBOX_RABBITMQ_KEY_PASSWORD", "KeyPassword", "password of an encrypted KeyFile",
			func(c *Config) *string { return (*string)(&c.KeyPassword) }),
		envconfig.DurationSetting("OUTBOX_RABBITMQ_DIAL_TIMEOUT", "DialTimeout", DefaultDialTimeout.String(), "bound on connecting, TLS and the AMQP handshake",
			func(c *Config) *time.Duration { return &c.DialTimeout }),
		envconfig.DurationSetting("OUTBOX_RABBITMQ_HEARTBEAT", "Heartbeat", DefaultHeartbeat.String(), "AMQP heartbeat interval",
			func(c *Config) *time.Duration { return &c.Heartbeat }),
		envconfig.DurationSetting("OUTBOX_RABBITMQ_WRITE_TIMEOUT", "WriteTimeout", DefaultWriteTimeout.String(), "bound on one socket write; a broker that stops reading longer has the connection closed",
			func(c *Config) *time.Duration { return &c.WriteTimeout }),
		envconfig.DurationSetting("OUTBOX_RABBITMQ_RECONNECT_MIN", "ReconnectMin", DefaultReconnectMin.String(), "wait after a failed connection attempt, doubling",
			func(c *Config) *time.Duration { return &c.ReconnectMin }),
		envconfig.DurationSetting("OUTBOX_RABBITMQ_RECONNECT_MAX", "ReconnectMax", DefaultReconnectMax.String(), "longest wait between connection attempts",
			func(c *Config) *time.Duration { return &c.ReconnectMax }),
		envconfig.StringSetting("OUTBOX_RABBITMQ_CONNECTION_NAME", "ConnectionName", DefaultConnectionName, "connection name shown by the broker",
			func(c *Config) *string { return &c.ConnectionName }),
	}
}
