package nats

import (
	"strconv"
	"time"

	"github.com/txoutbox/outbox/envconfig"
)

// Settings returns the OUTBOX_NATS_* environment variables of Config, in the vocabulary every
// component shares (envconfig.Setting): a program configured from its environment loads them with
// envconfig.LoadSettings, and the outbox command offers each as a flag of the same name
// (--nats-url), except the credentials (password, token, NKey seed, creds content), which it
// reads from the environment only. Conn, TLS, Routes, Route and Logger are for programs, not
// settings.
func Settings() []envconfig.Setting[Config] {
	return []envconfig.Setting[Config]{
		envconfig.StringSetting("OUTBOX_NATS_URL", "URL", DefaultURL, "server, or comma-separated servers of one cluster (tls:// for TLS)",
			func(c *Config) *string { return (*string)(&c.URL) }),
		envconfig.StringSetting("OUTBOX_NATS_USER", "User", "none", "user name, with OUTBOX_NATS_PASSWORD",
			func(c *Config) *string { return &c.User }),
		envconfig.SecretSetting("OUTBOX_NATS_PASSWORD", "Password", "password of OUTBOX_NATS_USER",
			func(c *Config) *string { return (*string)(&c.Password) }),
		envconfig.SecretSetting("OUTBOX_NATS_TOKEN", "Token", "authentication token",
			func(c *Config) *string { return (*string)(&c.Token) }),
		envconfig.SecretSetting("OUTBOX_NATS_NKEY_SEED", "NKeySeed", "seed of a user NKey (SU…)",
			func(c *Config) *string { return (*string)(&c.NKeySeed) }),
		envconfig.StringSetting("OUTBOX_NATS_CREDS_FILE", "CredsFile", "none", "path of a .creds file (user JWT and NKey seed)",
			func(c *Config) *string { return &c.CredsFile }),
		envconfig.SecretSetting("OUTBOX_NATS_CREDENTIALS", "Credentials", "content of a .creds file",
			func(c *Config) *string { return (*string)(&c.Credentials) }),
		envconfig.StringSetting("OUTBOX_NATS_CA_FILE", "CAFile", "the system roots", "PEM file of the CAs that verify the servers",
			func(c *Config) *string { return &c.CAFile }),
		envconfig.StringSetting("OUTBOX_NATS_CERT_FILE", "CertFile", "none", "PEM client certificate",
			func(c *Config) *string { return &c.CertFile }),
		envconfig.StringSetting("OUTBOX_NATS_KEY_FILE", "KeyFile", "none", "PEM key of the client certificate",
			func(c *Config) *string { return &c.KeyFile }),
		envconfig.StringSetting("OUTBOX_NATS_NAME", "Name", DefaultName, "connection name shown by the server",
			func(c *Config) *string { return &c.Name }),
		envconfig.DurationSetting("OUTBOX_NATS_CONNECT_TIMEOUT", "ConnectTimeout", DefaultConnectTimeout.String(), "bound on the first connection and each reconnect",
			func(c *Config) *time.Duration { return &c.ConnectTimeout }),
		envconfig.DurationSetting("OUTBOX_NATS_RECONNECT_WAIT", "ReconnectWait", DefaultReconnectWait.String(), "pause between reconnect attempts (it reconnects forever)",
			func(c *Config) *time.Duration { return &c.ReconnectWait }),
		envconfig.StringSetting("OUTBOX_NATS_SUBJECT", "Subject", DefaultSubject, "subject template: {type} is replaced by the message type",
			func(c *Config) *string { return &c.Subject }),
		envconfig.StringSetting("OUTBOX_NATS_STREAM", "Stream", "none", "stream every message must land in (Nats-Expected-Stream)",
			func(c *Config) *string { return &c.Stream }),
		envconfig.BoolSetting("OUTBOX_NATS_RAW_PAYLOAD", "RawPayload", "false", "send the payload alone as the body instead of the JSON envelope",
			func(c *Config) *bool { return &c.RawPayload }),
		envconfig.IntSetting("OUTBOX_NATS_MAX_MESSAGE_BYTES", "MaxMessageBytes", "the server's max_payload", "largest message sent, headers and body",
			func(c *Config) *int { return &c.MaxMessageBytes }),
		envconfig.IntSetting("OUTBOX_NATS_MAX_PENDING", "MaxPending", strconv.Itoa(DefaultMaxPending), "PubAcks awaited at once",
			func(c *Config) *int { return &c.MaxPending }),
		envconfig.DurationSetting("OUTBOX_NATS_ACK_TIMEOUT", "AckTimeout", DefaultAckTimeout.String(), "wait for one message's PubAck; keep it below the relay's publish timeout",
			func(c *Config) *time.Duration { return &c.AckTimeout }),
		envconfig.BoolSetting("OUTBOX_NATS_KEEP_KEY_ORDER", "KeepKeyOrder", "false", "keep each key's order within a batch and stop a key at its first failure (with the relay's ordered mode)",
			func(c *Config) *bool { return &c.KeepKeyOrder }),
	}
}
