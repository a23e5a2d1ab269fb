package kafka_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

func TestConfigValidate(t *testing.T) {
	brokers := []string{"127.0.0.1:9092"}
	route := func(*outbox.Message) string { return "" }
	plain := &kafka.SASL{Mechanism: kafka.SASLPlain, User: "u", Password: "p"}
	for _, c := range []struct {
		name  string
		cfg   kafka.Config
		field string // "" means valid
		want  string
	}{
		{"topic", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "events"}, "", ""},
		{"routes only", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Routes: map[string]string{"A": "a.b_c-d"}}, "", ""},
		{"route func only", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Route: route}, "", ""},
		{"hostname and IPv6", kafka.Config{Connection: kafka.Connection{Brokers: []string{"kafka-1.internal:9092", "[::1]:9093"}}, Topic: "t"}, "", ""},
		{"sasl", kafka.Config{Connection: kafka.Connection{Brokers: brokers, SASL: plain}, Topic: "t"}, "", ""},
		{"scram", kafka.Config{Connection: kafka.Connection{Brokers: brokers, SASL: &kafka.SASL{Mechanism: kafka.SASLScramSHA512, User: "u", Password: "p"}}, Topic: "t"}, "", ""},
		{"tls", kafka.Config{Connection: kafka.Connection{Brokers: brokers, TLS: &tls.Config{}}, Topic: "t"}, "", ""},
		{"limits", kafka.Config{Connection: kafka.Connection{Brokers: brokers, DialTimeout: time.Second, ClientID: "svc-1"}, Topic: "t", MaxMessageBytes: kafka.MaxMessageBytesLimit, Concurrency: kafka.MaxConcurrency,
			DeliveryTimeout: time.Second, Compression: kafka.CompressionZstd}, "", ""},

		{"no brokers", kafka.Config{Topic: "t"}, "Brokers", "is empty"},
		{"broker without port", kafka.Config{Connection: kafka.Connection{Brokers: []string{"localhost"}}, Topic: "t"}, "Brokers[0]", "not host:port"},
		{"broker bad port", kafka.Config{Connection: kafka.Connection{Brokers: []string{"h:0"}}, Topic: "t"}, "Brokers[0]", "no valid port"},
		{"broker URL", kafka.Config{Connection: kafka.Connection{Brokers: []string{"h:1", "kafka://h:9092"}}, Topic: "t"}, "Brokers[1]", "not a URL"},
		{"broker with user", kafka.Config{Connection: kafka.Connection{Brokers: []string{"me:pw@h:9092"}}, Topic: "t"}, "Brokers[0]", "without user information"},
		{"no destination", kafka.Config{Connection: kafka.Connection{Brokers: brokers}}, "Topic", "is empty"},
		{"bad topic", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "has space"}, "Topic", "not a valid topic name"},
		{"dot topic", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: ".."}, "Topic", "not a valid topic name"},
		{"long topic", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: strings.Repeat("t", 250)}, "Topic", "not a valid topic name"},
		{"route to a bad topic", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", Routes: map[string]string{"A": "a/b"}}, `Routes["A"]`, "not a valid"},
		{"route to nothing", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", Routes: map[string]string{"A": ""}}, `Routes["A"]`, "is empty"},
		{"route for no type", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", Routes: map[string]string{"": "t"}}, "Routes", "empty message type"},
		{"client id", kafka.Config{Connection: kafka.Connection{Brokers: brokers, ClientID: "has space"}, Topic: "t"}, "ClientID", "printable ASCII"},
		{"sasl mechanism", kafka.Config{Connection: kafka.Connection{Brokers: brokers, SASL: &kafka.SASL{Mechanism: "GSSAPI", User: "u", Password: "p"}}, Topic: "t"}, "SASL.Mechanism", "not one of"},
		{"sasl user", kafka.Config{Connection: kafka.Connection{Brokers: brokers, SASL: &kafka.SASL{Mechanism: kafka.SASLPlain, Password: "p"}}, Topic: "t"}, "SASL.User", "is empty"},
		{"sasl password", kafka.Config{Connection: kafka.Connection{Brokers: brokers, SASL: &kafka.SASL{Mechanism: kafka.SASLPlain, User: "u"}}, Topic: "t"}, "SASL.Password", "is empty"},
		{"negative size", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", MaxMessageBytes: -1}, "MaxMessageBytes", "negative"},
		{"tiny size", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", MaxMessageBytes: 100}, "MaxMessageBytes", "below"},
		{"huge size", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", MaxMessageBytes: kafka.MaxMessageBytesLimit + 1}, "MaxMessageBytes", "above"},
		{"compression", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", Compression: "brotli"}, "Compression", "not one of"},
		{"negative concurrency", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", Concurrency: -1}, "Concurrency", "negative"},
		{"huge concurrency", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", Concurrency: kafka.MaxConcurrency + 1}, "Concurrency", "above"},
		{"negative delivery timeout", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", DeliveryTimeout: -time.Second}, "DeliveryTimeout", "negative"},
		{"short delivery timeout", kafka.Config{Connection: kafka.Connection{Brokers: brokers}, Topic: "t", DeliveryTimeout: time.Millisecond}, "DeliveryTimeout", "below 1s"},
		{"negative dial timeout", kafka.Config{Connection: kafka.Connection{Brokers: brokers, DialTimeout: -1}, Topic: "t"}, "DialTimeout", "negative"},
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
			if ce.Component != "kafka" || ce.Field != c.field || !strings.Contains(ce.Problem, c.want) {
				t.Fatalf("Validate() = %v, want field %s with %q", err, c.field, c.want)
			}
			if !strings.HasPrefix(err.Error(), "kafka: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
		})
	}
}

// New refuses what Validate refuses.
func TestNewValidates(t *testing.T) {
	if _, err := kafka.New(context.Background(), kafka.Config{Topic: "t"}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("New = %v, want a config error", err)
	}
}

// Secrets given in Config or ConsumerConfig (the SASL password, credentials pasted into a
// broker address, the TLS configuration) appear in no description under any verb, no JSON and
// no error.
func TestSecretsNeverShown(t *testing.T) {
	const (
		password   = "sasl-password-do-not-print"
		urlSecret  = "url-password-do-not-print"
		certSecret = "tls-config-do-not-print"
	)
	sasl := &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "relay", Password: password}
	cfg := kafka.Config{Connection: kafka.Connection{Brokers: []string{"127.0.0.1:1"}, SASL: sasl, TLS: &tls.Config{ServerName: certSecret}}, Topic: "t"}
	withURL := cfg
	withURL.Brokers = []string{"relay:" + urlSecret + "@127.0.0.1:9092"}
	noPassword := cfg
	noPassword.SASL = &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "relay"}

	tr, err := kafka.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	jsonOf := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		return string(b)
	}
	consumer := kafka.ConsumerConfig{Connection: withURL.Connection, Topics: []string{"t"}, Group: "g"}
	texts := []struct{ what, text string }{
		{"Transport %v", fmt.Sprintf("%v", tr)},
		{"URL broker validate error", withURL.Validate().Error()},
		{"URL broker New error", errorText(kafka.New(context.Background(), withURL))},
		{"consumer URL broker validate error", consumer.Validate().Error()},
		{"missing password validate error", noPassword.Validate().Error()},
		{"SASL error", fmt.Errorf("connect as %v: %w", sasl, errors.New("refused")).Error()},
		{"SASL %x", fmt.Sprintf("%x", sasl.Password)},
		{"SASL %q", fmt.Sprintf("%q", *sasl)},
	}
	for _, v := range []struct {
		what string
		v    any
	}{
		{"Config", cfg}, {"*Config", &cfg}, {"URL broker Config", withURL},
		{"ConsumerConfig", consumer}, {"*ConsumerConfig", &consumer}, {"SASL", *sasl}, {"*SASL", sasl},
	} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			texts = append(texts, struct{ what, text string }{v.what + " " + verb, fmt.Sprintf(verb, v.v)})
		}
		texts = append(texts, struct{ what, text string }{v.what + " JSON", jsonOf(v.v)})
	}
	for _, c := range texts {
		t.Run(c.what, func(t *testing.T) {
			for _, secret := range []string{password, urlSecret, certSecret} {
				if strings.Contains(c.text, secret) {
					t.Fatalf("%s shows a secret: %s", c.what, c.text)
				}
			}
			if c.text == "" {
				t.Fatalf("%s is empty", c.what)
			}
		})
	}
}

func errorText(_ *kafka.Transport, err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// SASL against a kfake cluster that requires it: the right password publishes; a wrong one is
// an outage (the relay's configuration, not the messages' fault) whose error does not show the
// password.
func TestSASL(t *testing.T) {
	if needCluster(t).fake == nil {
		t.Skip("starts a kfake cluster with SASL; " + brokersVar + " points at a real cluster")
	}
	const password = "right-password-do-not-print"
	admin := &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "admin", Password: password}
	c, err := startCluster(admin, kfake.EnableSASL(), kfake.Superuser(kafka.SASLScramSHA256, "admin", password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close) // after the topic's deletion and the transports' Close, which run first
	topic := c.createTopic(t, 1, nil)

	good := c.newTransport(t, kafka.Config{Connection: kafka.Connection{SASL: &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "admin", Password: password}}, Topic: topic})
	if err := good.Publish(testCtx(t), prepared(t, messages(2, "T", "k")...)); err != nil {
		t.Fatalf("publish with the right password: %v", err)
	}

	const wrong = "wrong-password-do-not-print"
	bad := c.newTransport(t, kafka.Config{Connection: kafka.Connection{SASL: &kafka.SASL{Mechanism: kafka.SASLScramSHA256, User: "admin", Password: wrong}}, Topic: topic, DeliveryTimeout: time.Second})
	start := time.Now()
	err = bad.Publish(testCtx(t), prepared(t, messages(2, "T", "k")...))
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("publish with a wrong password took %v", took)
	}
	if !outbox.IsUnavailable(err) || outbox.IsPermanent(err) {
		t.Fatalf("publish with a wrong password = %v, want an outage", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), password) {
		t.Fatalf("error shows a password: %v", err)
	}
}
