package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
)

// Config tunes a Relay. The zero value of every field means its documented default.
type Config struct {
	// BatchSize is how many messages one claim takes and one Publish call receives. Default 100.
	BatchSize int
	// Concurrency is how many claim-publish-ack cycles run at once. Default 2.
	Concurrency int
	// PollInterval is how often an idle relay looks for work when no notification woke it. It
	// bounds the delay of a message whose notification was lost, and the relay's idle load: one
	// claim per interval. Default 1s; at least MinPollInterval.
	PollInterval time.Duration
	// Lease is how long a claimed message stays reserved for this relay. A relay that dies loses
	// its leases after this long and another relay publishes the messages again. Default 30s;
	// at least MinLease.
	Lease time.Duration
	// PublishTimeout bounds one Publish call, so that a hung broker never outlives the lease and
	// causes duplicates. Default Lease/2; it must be below Lease and at least MinPublishTimeout.
	// A publish that runs out of time counts as a broker outage at first (no attempt is
	// charged), and its messages become suspects: the relay publishes them apart from the rest
	// from then on, so that one message whose publish never completes ends up alone. A suspect
	// that runs out of time alone while publishes without it succeed is charged an attempt, and
	// goes dead after MaxAttempts instead of stalling the relay.
	PublishTimeout time.Duration
	// MaxAttempts is how many failed publishes move a message to dead. Default 25.
	MaxAttempts int
	// Backoff spaces the retries of a failed message, and of failed store calls.
	Backoff Backoff
	// Unordered lets the relay publish the messages of one Key out of order. By default (false)
	// the relay publishes messages with the same Key strictly one after the other: message n+1
	// is never published before message n was acknowledged, and a failing or dead message
	// blocks only its own Key. Set it only when consumers do not care about order: it saves
	// little (ordered mode runs near the unordered speed), and the relay logs a warning.
	Unordered bool
	// Logger receives the relay's structured logs. Default zap.NewNop(). A service logging with
	// log/slog passes SlogLogger(its *slog.Logger), as it does to every Logger field of the
	// stores, transports and consumers.
	Logger *zap.Logger
	// Middleware wraps the transport; the first is the outermost.
	Middleware []Middleware
	// Owner identifies this relay in leases. Default host-pid-random, unique per relay.
	Owner string
	// ShutdownTimeout bounds the graceful stop Run performs when its context ends. Default 10s.
	ShutdownTimeout time.Duration
	// RetainDelivered, with a store that keeps delivered messages (Retention), makes the relay
	// delete those delivered longer ago than this, in batches, every CleanupInterval.
	// Default 0: the relay deletes nothing.
	RetainDelivered time.Duration
	// CleanupInterval is how often retention runs. Default 1m.
	CleanupInterval time.Duration
	// Clock is the relay's clock. It is used only for what concerns the relay itself (the lag in
	// Stats, outage timestamps); every time stored with a message (leases, retry times, retention
	// cutoffs) is computed by the store with its own clock, so a skewed relay neither kills
	// messages early nor delays them. Tests inject a skewed clock here. Default time.Now.
	Clock func() time.Time
}

// The smallest values Validate accepts: below them a relay cannot work (a lease that expires
// before a claim, a publish and an ack can run; a publish timeout no broker can meet; a poll
// loop that spins).
const (
	MinLease          = 100 * time.Millisecond
	MinPublishTimeout = 10 * time.Millisecond
	MinPollInterval   = 10 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = c.Lease / 2
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	c.Backoff = c.Backoff.withDefaults()
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.CleanupInterval == 0 {
		c.CleanupInterval = DefaultCleanupInterval
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// Validate names the first invalid field. Zero values are valid: they mean the default.
func (c Config) Validate() error {
	bad := func(field, problem string) error {
		return &ConfigError{Component: "relay", Field: field, Problem: problem}
	}
	switch {
	case c.BatchSize < 0:
		return bad("BatchSize", "is negative")
	case c.BatchSize > 10000:
		return bad("BatchSize", fmt.Sprintf("%d is above 10000", c.BatchSize))
	case c.Concurrency < 0:
		return bad("Concurrency", "is negative")
	case c.Concurrency > 1024:
		return bad("Concurrency", fmt.Sprintf("%d is above 1024", c.Concurrency))
	case c.PollInterval < 0:
		return bad("PollInterval", "is negative")
	case c.PollInterval > 0 && c.PollInterval < MinPollInterval:
		return bad("PollInterval", fmt.Sprintf("%v is below the minimum of %v", c.PollInterval, MinPollInterval))
	case c.Lease < 0:
		return bad("Lease", "is negative")
	case c.Lease > 0 && c.Lease < MinLease:
		return bad("Lease", fmt.Sprintf("%v is below the minimum of %v", c.Lease, MinLease))
	case c.PublishTimeout < 0:
		return bad("PublishTimeout", "is negative")
	case c.PublishTimeout > 0 && c.PublishTimeout < MinPublishTimeout:
		return bad("PublishTimeout", fmt.Sprintf("%v is below the minimum of %v", c.PublishTimeout, MinPublishTimeout))
	case c.MaxAttempts < 0:
		return bad("MaxAttempts", "is negative")
	case c.ShutdownTimeout < 0:
		return bad("ShutdownTimeout", "is negative")
	case c.RetainDelivered < 0:
		return bad("RetainDelivered", "is negative")
	case c.CleanupInterval < 0:
		return bad("CleanupInterval", "is negative")
	case len(c.Owner) > 200:
		return bad("Owner", "is longer than 200 bytes")
	}
	if err := c.Backoff.Validate("relay", "Backoff"); err != nil {
		return err
	}
	if d := c.withDefaults(); d.PublishTimeout >= d.Lease {
		return bad("PublishTimeout", fmt.Sprintf("%v must be below Lease (%v), or a slow publish outlives its lease", d.PublishTimeout, d.Lease))
	}
	return nil
}

// defaultOwner returns a lease owner unique to this relay: host, process and a random suffix.
func defaultOwner() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "relay"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ordered reports whether the relay keeps per-key order: unless Unordered is set.
func (c Config) ordered() bool { return !c.Unordered }
