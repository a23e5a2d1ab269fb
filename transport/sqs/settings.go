package sqs

import (
	"strconv"

	"github.com/txoutbox/outbox/envconfig"
)

// Settings returns the OUTBOX_SQS_* environment variables of Config, in the vocabulary every
// component shares (envconfig.Setting): a program configured from its environment loads them with
// envconfig.LoadSettings, and the outbox command offers each as a flag of the same name
// (--sqs-queue-url), except the credentials, which it reads from the environment only.
func Settings() []envconfig.Setting[Config] {
	return []envconfig.Setting[Config]{
		envconfig.StringSetting("OUTBOX_SQS_QUEUE_URL", "QueueURL", "none", "SQS queue URL or name; a name ending in .fifo is a FIFO queue",
			func(c *Config) *string { return &c.QueueURL }),
		envconfig.StringSetting("OUTBOX_SQS_REGION", "Region", "AWS_REGION or the shared profile's", "AWS region",
			func(c *Config) *string { return &c.Region }),
		envconfig.StringSetting("OUTBOX_SQS_ENDPOINT", "Endpoint", "AWS's", "SQS endpoint, e.g. http://127.0.0.1:4566 for an emulator",
			func(c *Config) *string { return &c.Endpoint }),
		envconfig.StringSetting("OUTBOX_SQS_DEFAULT_GROUP", "DefaultGroupID", DefaultGroupID, "FIFO MessageGroupId of messages without a key",
			func(c *Config) *string { return &c.DefaultGroupID }),
		envconfig.BoolSetting("OUTBOX_SQS_RAW_PAYLOAD", "RawPayload", "false", "send the payload alone as the body instead of the JSON envelope",
			func(c *Config) *bool { return &c.RawPayload }),
		envconfig.IntSetting("OUTBOX_SQS_CONCURRENCY", "Concurrency", strconv.Itoa(DefaultConcurrency), "SendMessageBatch calls in flight",
			func(c *Config) *int { return &c.Concurrency }),
		envconfig.SecretSetting("OUTBOX_SQS_ACCESS_KEY_ID", "AccessKeyID", "static credentials: the access key ID (default: the AWS default chain)",
			func(c *Config) *string { return (*string)(&c.AccessKeyID) }),
		envconfig.SecretSetting("OUTBOX_SQS_SECRET_ACCESS_KEY", "SecretAccessKey", "static credentials: the secret access key",
			func(c *Config) *string { return (*string)(&c.SecretAccessKey) }),
		envconfig.SecretSetting("OUTBOX_SQS_SESSION_TOKEN", "SessionToken", "static credentials: the session token of temporary ones",
			func(c *Config) *string { return (*string)(&c.SessionToken) }),
	}
}
