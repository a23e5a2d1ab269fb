package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/envconfig"
	"github.com/txoutbox/outbox/transport/kafka"
)

// kafkaFlags are the Kafka transport's settings as the command takes them: lists and TLS as
// text and files, turned into a kafka.Config by config.
type kafkaFlags struct {
	cfg                       kafka.Config
	brokers, routes           string
	sasl                      kafka.SASL
	saslPassword              string
	tls                       bool
	caFile, certFile, keyFile string
}

// kafkaSettings are the OUTBOX_KAFKA_* variables. The Kafka transport's package has no
// Settings of its own, so the command lists them; the fields are kafka.Config's, as its
// validation errors name them, so that each error is reported under its flag.
func kafkaSettings() []envconfig.Setting[kafkaFlags] {
	return []envconfig.Setting[kafkaFlags]{
		envconfig.StringSetting("OUTBOX_KAFKA_BROKERS", "Brokers", "none", "seed brokers, host:port[,host:port…]",
			func(k *kafkaFlags) *string { return &k.brokers }),
		envconfig.StringSetting("OUTBOX_KAFKA_TOPIC", "Topic", "none", "topic of messages no route claims",
			func(k *kafkaFlags) *string { return &k.cfg.Topic }),
		envconfig.StringSetting("OUTBOX_KAFKA_ROUTES", "Routes", "none", "topics by message type: TYPE=TOPIC[,TYPE=TOPIC…]",
			func(k *kafkaFlags) *string { return &k.routes }),
		envconfig.BoolSetting("OUTBOX_KAFKA_RAW_PAYLOAD", "RawPayload", "false", "send the payload alone as the record value instead of the JSON envelope",
			func(k *kafkaFlags) *bool { return &k.cfg.RawPayload }),
		envconfig.StringSetting("OUTBOX_KAFKA_CLIENT_ID", "ClientID", kafka.DefaultClientID, "client.id announced to the brokers",
			func(k *kafkaFlags) *string { return &k.cfg.ClientID }),
		envconfig.StringSetting("OUTBOX_KAFKA_SASL_MECHANISM", "SASL.Mechanism", "none", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, with OUTBOX_KAFKA_SASL_USER and OUTBOX_KAFKA_SASL_PASSWORD",
			func(k *kafkaFlags) *string { return &k.sasl.Mechanism }),
		envconfig.StringSetting("OUTBOX_KAFKA_SASL_USER", "SASL.User", "none", "SASL user name",
			func(k *kafkaFlags) *string { return &k.sasl.User }),
		envconfig.SecretSetting("OUTBOX_KAFKA_SASL_PASSWORD", "SASL.Password", "SASL password",
			func(k *kafkaFlags) *string { return &k.saslPassword }),
		envconfig.BoolSetting("OUTBOX_KAFKA_TLS", "", "false", "connect with TLS (turned on by the file settings below too)",
			func(k *kafkaFlags) *bool { return &k.tls }),
		envconfig.StringSetting("OUTBOX_KAFKA_CA_FILE", "", "the system roots", "PEM file of the CAs that verify the brokers",
			func(k *kafkaFlags) *string { return &k.caFile }),
		envconfig.StringSetting("OUTBOX_KAFKA_CERT_FILE", "", "none", "PEM client certificate",
			func(k *kafkaFlags) *string { return &k.certFile }),
		envconfig.StringSetting("OUTBOX_KAFKA_KEY_FILE", "", "none", "PEM key of the client certificate",
			func(k *kafkaFlags) *string { return &k.keyFile }),
		envconfig.IntSetting("OUTBOX_KAFKA_MAX_MESSAGE_BYTES", "MaxMessageBytes", strconv.Itoa(kafka.DefaultMaxMessageBytes), "largest record as Kafka counts it; keep it at or below the topics' max.message.bytes",
			func(k *kafkaFlags) *int { return &k.cfg.MaxMessageBytes }),
		envconfig.StringSetting("OUTBOX_KAFKA_COMPRESSION", "Compression", kafka.DefaultCompression, "none, gzip, snappy, lz4 or zstd",
			func(k *kafkaFlags) *string { return &k.cfg.Compression }),
		envconfig.IntSetting("OUTBOX_KAFKA_CONCURRENCY", "Concurrency", strconv.Itoa(kafka.DefaultConcurrency), "flushes in flight, each on a producer client of its own",
			func(k *kafkaFlags) *int { return &k.cfg.Concurrency }),
		envconfig.DurationSetting("OUTBOX_KAFKA_DELIVERY_TIMEOUT", "DeliveryTimeout", docDuration(kafka.DefaultDeliveryTimeout), "how long the producer tries to deliver a record; keep it below the relay's publish timeout",
			func(k *kafkaFlags) *time.Duration { return &k.cfg.DeliveryTimeout }),
		envconfig.DurationSetting("OUTBOX_KAFKA_DIAL_TIMEOUT", "DialTimeout", docDuration(kafka.DefaultDialTimeout), "bound on connecting to one broker",
			func(k *kafkaFlags) *time.Duration { return &k.cfg.DialTimeout }),
	}
}

// docDuration writes d as the docs do: 5m rather than 5m0s.
func docDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}

// config turns the flags into a validated kafka.Config; problems are usage errors naming the
// flag, and none repeats a secret or a file's content.
func (k *kafkaFlags) config(cmd string, f *flags) (kafka.Config, error) {
	cfg := k.cfg
	if strings.TrimSpace(k.brokers) == "" {
		return cfg, usagef(cmd, "%s: is empty; give the seed brokers, host:port[,host:port…]", f.describe("kafka-brokers"))
	}
	cfg.Brokers = nil
	for _, b := range strings.Split(k.brokers, ",") {
		if b = strings.TrimSpace(b); b == "" {
			return cfg, usagef(cmd, "%s: has an empty entry", f.describe("kafka-brokers"))
		}
		cfg.Brokers = append(cfg.Brokers, b)
	}
	if strings.TrimSpace(k.routes) != "" {
		cfg.Routes = map[string]string{}
		for _, r := range strings.Split(k.routes, ",") {
			typ, topic, ok := strings.Cut(strings.TrimSpace(r), "=")
			typ, topic = strings.TrimSpace(typ), strings.TrimSpace(topic)
			if !ok || typ == "" || topic == "" {
				return cfg, usagef(cmd, "%s: want TYPE=TOPIC[,TYPE=TOPIC…]", f.describe("kafka-routes"))
			}
			if _, dup := cfg.Routes[typ]; dup {
				return cfg, usagef(cmd, "%s: type %q is routed twice", f.describe("kafka-routes"), typ)
			}
			cfg.Routes[typ] = topic
		}
	}
	if k.sasl != (kafka.SASL{}) || k.saslPassword != "" {
		s := k.sasl
		s.Mechanism = strings.ToUpper(s.Mechanism)
		s.Password = outbox.Secret(k.saslPassword)
		cfg.SASL = &s
	}
	if k.tls || k.caFile != "" || k.certFile != "" || k.keyFile != "" {
		tc, err := k.tlsConfig(cmd, f)
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	if err := cfg.Validate(); err != nil {
		return cfg, f.configError(err) // kafka's errors name the field and never repeat a secret
	}
	return cfg, nil
}

// tlsConfig builds the TLS configuration of the files given.
func (k *kafkaFlags) tlsConfig(cmd string, f *flags) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if k.caFile != "" {
		pem, err := os.ReadFile(k.caFile)
		if err != nil {
			return nil, usagef(cmd, "%s: cannot read the file", f.describe("kafka-ca-file"))
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usagef(cmd, "%s: holds no PEM certificate", f.describe("kafka-ca-file"))
		}
	}
	switch {
	case (k.certFile == "") != (k.keyFile == ""):
		return nil, usagef(cmd, "%s and %s: give both or neither", f.describe("kafka-cert-file"), f.describe("kafka-key-file"))
	case k.certFile != "":
		cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
		if err != nil {
			// The error of crypto/tls names what is wrong, never the key's bytes.
			return nil, usagef(cmd, "%s and %s: cannot load the certificate and its key: %v", f.describe("kafka-cert-file"), f.describe("kafka-key-file"), err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
