package main

import (
	"errors"
	"fmt"
	"strings"
)

// config is what the example reads from the environment.
type config struct {
	MongoURI    string // OUTBOX_MONGO_URI, required: a replica set or sharded cluster (transactions)
	Database    string // OUTBOX_MONGO_DATABASE, default: the database in the URI's path
	QueueURL    string // OUTBOX_SQS_QUEUE_URL, required: a queue URL or name
	Region      string // OUTBOX_SQS_REGION, default: the AWS environment's
	Endpoint    string // OUTBOX_SQS_ENDPOINT, default: AWS; e.g. http://127.0.0.1:4566 for an emulator
	AccessKeyID string // OUTBOX_SQS_ACCESS_KEY_ID with OUTBOX_SQS_SECRET_ACCESS_KEY, default: the AWS chain
	SecretKey   secret
}

// errMissing is a setup problem, not a failure: the example says what to set and exits 2.
type errMissing struct{ msg string }

func (e *errMissing) Error() string { return e.msg }

const setup = "set OUTBOX_MONGO_URI (a replica set, e.g. mongodb://localhost:27017/app?replicaSet=rs0) and " +
	"OUTBOX_SQS_QUEUE_URL (a queue URL or name); optionally OUTBOX_MONGO_DATABASE, OUTBOX_SQS_REGION, " +
	"OUTBOX_SQS_ENDPOINT (http://127.0.0.1:4566 for an emulator), OUTBOX_SQS_ACCESS_KEY_ID and " +
	"OUTBOX_SQS_SECRET_ACCESS_KEY (else the AWS default chain)"

func configFromEnv(getenv func(string) string) (config, error) {
	c := config{
		MongoURI:    getenv("OUTBOX_MONGO_URI"),
		Database:    getenv("OUTBOX_MONGO_DATABASE"),
		QueueURL:    getenv("OUTBOX_SQS_QUEUE_URL"),
		Region:      getenv("OUTBOX_SQS_REGION"),
		Endpoint:    getenv("OUTBOX_SQS_ENDPOINT"),
		AccessKeyID: getenv("OUTBOX_SQS_ACCESS_KEY_ID"),
		SecretKey:   secret(getenv("OUTBOX_SQS_SECRET_ACCESS_KEY")),
	}
	var missing []string
	if c.MongoURI == "" {
		missing = append(missing, "OUTBOX_MONGO_URI")
	}
	if c.QueueURL == "" {
		missing = append(missing, "OUTBOX_SQS_QUEUE_URL")
	}
	if len(missing) > 0 {
		return c, &errMissing{fmt.Sprintf("%s not set: %s", strings.Join(missing, " and "), setup)}
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
