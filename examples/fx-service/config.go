package main

import (
	"errors"
	"fmt"
	"strings"
)

// Config is the service's own configuration, read from the environment by main. The relay's
// tuning comes from OUTBOX_* variables through outboxfx.ConfigFromEnv.
type Config struct {
	// PostgresURL is the database of the users table and the outbox (OUTBOX_POSTGRES_URL). Required.
	PostgresURL string
	// Schema holds both tables (OUTBOX_POSTGRES_SCHEMA). Default "public".
	Schema string
	// Listen is the HTTP address (LISTEN_ADDR). Default 127.0.0.1:8080.
	Listen string
	// QueueURL, Region, Endpoint, AccessKeyID and SecretKey configure SQS as in
	// examples/postgres-sqs (OUTBOX_SQS_*). QueueURL is required.
	QueueURL, Region, Endpoint, AccessKeyID string
	SecretKey                               secret
}

// errMissing is a setup problem: main says what to set and exits 2.
type errMissing struct{ msg string }

func (e *errMissing) Error() string { return e.msg }

// ConfigFromEnv reads Config through getenv (os.Getenv).
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		PostgresURL: getenv("OUTBOX_POSTGRES_URL"),
		Schema:      getenv("OUTBOX_POSTGRES_SCHEMA"),
		Listen:      getenv("LISTEN_ADDR"),
		QueueURL:    getenv("OUTBOX_SQS_QUEUE_URL"),
		Region:      getenv("OUTBOX_SQS_REGION"),
		Endpoint:    getenv("OUTBOX_SQS_ENDPOINT"),
		AccessKeyID: getenv("OUTBOX_SQS_ACCESS_KEY_ID"),
		SecretKey:   secret(getenv("OUTBOX_SQS_SECRET_ACCESS_KEY")),
	}
	if c.Schema == "" {
		c.Schema = "public"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	var missing []string
	if c.PostgresURL == "" {
		missing = append(missing, "OUTBOX_POSTGRES_URL")
	}
	if c.QueueURL == "" {
		missing = append(missing, "OUTBOX_SQS_QUEUE_URL")
	}
	if len(missing) > 0 {
		return c, &errMissing{fmt.Sprintf("%s not set: set OUTBOX_POSTGRES_URL (e.g. postgres://user@localhost:5432/app) "+
			"and OUTBOX_SQS_QUEUE_URL; optionally OUTBOX_SQS_REGION, OUTBOX_SQS_ENDPOINT, OUTBOX_SQS_ACCESS_KEY_ID, "+
			"OUTBOX_SQS_SECRET_ACCESS_KEY, LISTEN_ADDR and the relay's OUTBOX_* tuning", strings.Join(missing, " and "))}
	}
	if (c.AccessKeyID == "") != (c.SecretKey == "") {
		return c, &errMissing{"set both OUTBOX_SQS_ACCESS_KEY_ID and OUTBOX_SQS_SECRET_ACCESS_KEY, or neither"}
	}
	return c, nil
}

func isMissing(err error) bool {
	var m *errMissing
	return errors.As(err, &m)
}

// secret is a credential: it prints and marshals as "[redacted]", so a logged or dumped config
// never shows it.
type secret string

func (secret) String() string               { return "[redacted]" }
func (secret) GoString() string             { return `"[redacted]"` }
func (secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }
