package sqs_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/sqs"
)

func TestConfigValidate(t *testing.T) {
	const url = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
	client := awssqs.New(awssqs.Options{Region: "eu-west-1"})
	route := func(*outbox.Message) string { return "" }
	for _, c := range []struct {
		name  string
		cfg   sqs.Config
		field string // "" means valid
		want  string
	}{
		{"queue URL", sqs.Config{QueueURL: url}, "", ""},
		{"queue name", sqs.Config{QueueURL: "orders"}, "", ""},
		{"FIFO name", sqs.Config{QueueURL: "orders.fifo"}, "", ""},
		{"routes only", sqs.Config{Routes: map[string]string{"A": "a"}}, "", ""},
		{"route func only", sqs.Config{Route: route}, "", ""},
		{"static keys", sqs.Config{Connection: sqs.Connection{Region: "eu-west-1", AccessKeyID: "AK", SecretAccessKey: "s", SessionToken: "t"}, QueueURL: url}, "", ""},
		{"endpoint", sqs.Config{Connection: sqs.Connection{Endpoint: "http://127.0.0.1:4566", Region: "local"}, QueueURL: "q"}, "", ""},
		{"own client", sqs.Config{Connection: sqs.Connection{Client: client}, QueueURL: url}, "", ""},
		{"own config", sqs.Config{Connection: sqs.Connection{AWSConfig: &aws.Config{}}, QueueURL: url}, "", ""},
		{"limits", sqs.Config{QueueURL: url, MaxMessageBytes: 1 << 20, MaxBatchBytes: 1 << 20, Concurrency: 256}, "", ""},
		{"large message raises the batch default", sqs.Config{QueueURL: url, MaxMessageBytes: 512 << 10}, "", ""},

		{"no destination", sqs.Config{}, "QueueURL", "is empty"},
		{"bad queue name", sqs.Config{QueueURL: "orders queue"}, "QueueURL", "neither a queue URL nor a queue name"},
		{"long queue name", sqs.Config{QueueURL: strings.Repeat("q", 81)}, "QueueURL", "neither"},
		{"queue URL scheme", sqs.Config{QueueURL: "ftp://host/1/q"}, "QueueURL", "scheme"},
		{"queue URL path", sqs.Config{QueueURL: "https://sqs.eu-west-1.amazonaws.com/"}, "QueueURL", "no queue path"},
		{"queue URL user", sqs.Config{QueueURL: "https://me:secret@host/1/q"}, "QueueURL", "user information"},
		{"route to nowhere", sqs.Config{QueueURL: url, Routes: map[string]string{"A": "not a queue"}}, `Routes["A"]`, "neither"},
		{"route for no type", sqs.Config{QueueURL: url, Routes: map[string]string{"": "q"}}, "Routes", "empty message type"},
		{"client and config", sqs.Config{Connection: sqs.Connection{Client: client, AWSConfig: &aws.Config{}}, QueueURL: url}, "AWSConfig", "together with Client"},
		{"client and region", sqs.Config{Connection: sqs.Connection{Client: client, Region: "eu-west-1"}, QueueURL: url}, "Region", "together with Client"},
		{"config and keys", sqs.Config{Connection: sqs.Connection{AWSConfig: &aws.Config{}, AccessKeyID: "AK", SecretAccessKey: "s"}, QueueURL: url}, "AccessKeyID", "together with AWSConfig"},
		{"client and endpoint", sqs.Config{Connection: sqs.Connection{Client: client, Endpoint: "http://x"}, QueueURL: url}, "Endpoint", "together with Client"},
		{"key without secret", sqs.Config{Connection: sqs.Connection{AccessKeyID: "AK"}, QueueURL: url}, "SecretAccessKey", "is empty"},
		{"secret without key", sqs.Config{Connection: sqs.Connection{SecretAccessKey: "s"}, QueueURL: url}, "AccessKeyID", "is empty"},
		{"token alone", sqs.Config{Connection: sqs.Connection{SessionToken: "t"}, QueueURL: url}, "SessionToken", "without"},
		{"bad region", sqs.Config{Connection: sqs.Connection{Region: "EU West"}, QueueURL: url}, "Region", "not a region name"},
		{"endpoint scheme", sqs.Config{Connection: sqs.Connection{Endpoint: "127.0.0.1:4566"}, QueueURL: url}, "Endpoint", ""},
		{"endpoint host", sqs.Config{Connection: sqs.Connection{Endpoint: "http://"}, QueueURL: url}, "Endpoint", "no host"},
		{"group ID", sqs.Config{QueueURL: url, DefaultGroupID: "has space"}, "DefaultGroupID", "printable ASCII"},
		{"negative message size", sqs.Config{QueueURL: url, MaxMessageBytes: -1}, "MaxMessageBytes", "negative"},
		{"message size above SQS", sqs.Config{QueueURL: url, MaxMessageBytes: 1<<20 + 1}, "MaxMessageBytes", "above the SQS limit"},
		{"negative batch size", sqs.Config{QueueURL: url, MaxBatchBytes: -1}, "MaxBatchBytes", "negative"},
		{"batch size above SQS", sqs.Config{QueueURL: url, MaxBatchBytes: 2 << 20}, "MaxBatchBytes", "above the SQS limit"},
		{"batch below message", sqs.Config{QueueURL: url, MaxMessageBytes: 512 << 10, MaxBatchBytes: 300 << 10}, "MaxBatchBytes", "below MaxMessageBytes"},
		{"negative concurrency", sqs.Config{QueueURL: url, Concurrency: -1}, "Concurrency", "negative"},
		{"huge concurrency", sqs.Config{QueueURL: url, Concurrency: 1000}, "Concurrency", "above 256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want a *outbox.ConfigError", err)
			}
			if ce.Component != "sqs" || ce.Field != c.field || !strings.Contains(ce.Problem, c.want) {
				t.Fatalf("Validate() = %v, want field %s with %q", err, c.field, c.want)
			}
			if !strings.HasPrefix(err.Error(), "sqs: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
			if strings.Contains(err.Error(), "secret") && c.field != "SecretAccessKey" {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

// New refuses what Validate refuses, before touching the network.
func TestNewValidates(t *testing.T) {
	_, err := sqs.New(testCtx(t), sqs.Config{Connection: sqs.Connection{AccessKeyID: "AK"}, QueueURL: "q"})
	if !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("New = %v, want a config error", err)
	}
}
