package kafka

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/consume"
	"go.uber.org/zap"
)

// Consumer defaults and limits.
const (
	// DefaultConsumerConcurrency is how many partitions a Consumer handles at once by default
	// (the records of one partition are always handled one after the other).
	DefaultConsumerConcurrency = 8
	// MaxConsumerConcurrency bounds ConsumerConfig.Concurrency.
	MaxConsumerConcurrency = 1000
	// DefaultMaxPollRecords is how many records one poll hands to the handlers at most (and
	// so how many the consumer holds at once).
	DefaultMaxPollRecords = 500
	// DefaultRetryBackoff is how long a partition waits after a failed handler before its
	// records are fetched again from the failed one; it doubles with each consecutive failure
	// of that partition, up to MaxRetryBackoff.
	DefaultRetryBackoff = 500 * time.Millisecond
	// DefaultMaxRetryBackoff caps the doubling of RetryBackoff.
	DefaultMaxRetryBackoff = 30 * time.Second
	// DefaultFetchMaxWait is how long a broker may hold a fetch that has no data yet (Kafka's
	// own fetch.max.wait.ms); it is also how soon a partition resumed after a failure is
	// fetched again.
	DefaultFetchMaxWait = 500 * time.Millisecond
	// DefaultConsumerStopTimeout bounds Run's graceful stop once its context ends.
	DefaultConsumerStopTimeout = 30 * time.Second
)

// ConsumerConfig configures a Consumer. The zero value of every field means its documented
// default.
type ConsumerConfig struct {
	// Connection says how to reach the brokers, as a Transport's Config does: Brokers
	// (required), ClientID, SASL, TLS and DialTimeout.
	Connection

	// Handler is called for each record's message; nil commits past the record, an error
	// rewinds its partition to it. Required.
	Handler consume.Handler `json:"-"`

	// Topics are the topics to consume. Required.
	Topics []string `json:"topics"`
	// Group is the consumer group: the partitions of Topics are divided among the group's
	// members, and its committed offsets say where each partition resumes. Required.
	Group string `json:"group"`

	// RawPayload reads record values as the bare payload, with the ID and Type in the
	// outbox.id and outbox.type headers, as a Transport with RawPayload sends them. Default
	// false: values are envelopes, decoded with backend.DecodeEnvelope.
	RawPayload bool `json:"raw_payload"`

	// StartAtLatest makes a group with no committed offset for a partition start at its end.
	// Default false: such a partition is read from its start, so no record written before
	// the group first ran is skipped.
	StartAtLatest bool `json:"start_at_latest"`
	// Concurrency is how many partitions are handled at once; the records of one partition
	// are handled one after the other, in offset order. Default 8
	// (DefaultConsumerConcurrency); at most 1000.
	Concurrency int `json:"concurrency,omitempty"`
	// MaxPollRecords is how many records one poll takes at most. Default 500
	// (DefaultMaxPollRecords).
	MaxPollRecords int `json:"max_poll_records,omitempty"`
	// RetryBackoff is how long a partition rests after a failed handler before it is fetched
	// again from the failed record; it doubles per consecutive failure of that partition up to
	// MaxRetryBackoff. Default 500ms (DefaultRetryBackoff).
	RetryBackoff time.Duration `json:"retry_backoff,omitempty"`
	// MaxRetryBackoff caps RetryBackoff's doubling. Default 30s (DefaultMaxRetryBackoff).
	MaxRetryBackoff time.Duration `json:"max_retry_backoff,omitempty"`
	// FetchMaxWait is how long a broker may hold an empty fetch. Default 500ms
	// (DefaultFetchMaxWait).
	FetchMaxWait time.Duration `json:"fetch_max_wait,omitempty"`
	// HandlerTimeout bounds each handler call; its context is cancelled after it. Default none.
	HandlerTimeout time.Duration `json:"handler_timeout,omitempty"`
	// Logger receives the consumer's logs. Default zap.NewNop().
	Logger *zap.Logger `json:"-"`
}

// Format prints c as %v does, under every verb, as Config.Format does and for its reason.
func (c ConsumerConfig) Format(f fmt.State, verb rune) {
	type plain ConsumerConfig // the fields, without this method
	type ConsumerConfig plain // under its own name, for %#v
	fmt.Fprintf(f, fmt.FormatString(f, 'v'), ConsumerConfig(c))
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	c.Connection = c.Connection.withDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConsumerConcurrency
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = max(DefaultMaxRetryBackoff, c.RetryBackoff)
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = DefaultFetchMaxWait
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// transportConfig is the part of c a Transport's Config shares: the connection. The topic is
// only there to satisfy Config.Validate.
func (c ConsumerConfig) transportConfig() Config {
	return Config{Connection: c.Connection, Topic: "consumer"}
}

// Validate names the first missing or wrong field. It never repeats a secret.
func (c ConsumerConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "kafka consumer", Field: field, Problem: problem}
	}
	if err := c.transportConfig().Validate(); err != nil {
		return err
	}
	if c.Handler == nil {
		return bad("Handler", "is nil")
	}
	if len(c.Topics) == 0 {
		return bad("Topics", "is empty")
	}
	for i, topic := range c.Topics {
		if err := checkTopic(topic); err != nil {
			return bad(fmt.Sprintf("Topics[%d]", i), err.Error())
		}
	}
	switch {
	case c.Group == "":
		return bad("Group", "is empty")
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > MaxConsumerConcurrency:
		return bad("Concurrency", fmt.Sprintf("%d is above %d", c.Concurrency, MaxConsumerConcurrency))
	case c.MaxPollRecords < 0:
		return bad("MaxPollRecords", "is negative")
	case c.RetryBackoff < 0:
		return bad("RetryBackoff", "is negative")
	case c.MaxRetryBackoff < 0:
		return bad("MaxRetryBackoff", "is negative")
	case c.MaxRetryBackoff > 0 && c.MaxRetryBackoff < c.withDefaults().RetryBackoff:
		return bad("MaxRetryBackoff", fmt.Sprintf("%v is below RetryBackoff", c.MaxRetryBackoff))
	case c.FetchMaxWait < 0:
		return bad("FetchMaxWait", "is negative")
	case c.HandlerTimeout < 0:
		return bad("HandlerTimeout", "is negative")
	}
	return nil
}

// backoff is the runtime's backoff for a partition's consecutive failures: RetryBackoff
// doubling up to MaxRetryBackoff, without jitter (a partition's rest is its own).
func (c ConsumerConfig) backoff() outbox.Backoff {
	return outbox.Backoff{Initial: c.RetryBackoff, Max: c.MaxRetryBackoff, Multiplier: 2, Jitter: -1}
}

// consumerOptions are the franz-go options of the consumer's client. Offsets are committed
// only by the consumer, after the handlers (autocommit is off); a rebalance waits until the
// records of the current poll are settled and committed, so a partition is never handed to
// another member while its records are being handled here.
func consumerOptions(c ConsumerConfig) []kgo.Opt {
	reset := kgo.NewOffset().AtStart()
	if c.StartAtLatest {
		reset = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.DialTimeout(c.DialTimeout),
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(c.FetchMaxWait),
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(saslMechanism(*c.SASL)))
	}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	return opts
}
