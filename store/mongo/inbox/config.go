package inbox

import (
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Defaults of Config and of retention.
const (
	// DefaultCollection is the inbox collection's name.
	DefaultCollection = "inbox"
	// DefaultRetention is a retention window that outlasts SQS's longest message retention
	// period (14 days) by a day: a record pruned at that age can no longer meet a redelivery.
	DefaultRetention = 15 * 24 * time.Hour
	// DefaultPruneBatch is how many records one delete of Prune removes at most.
	DefaultPruneBatch = 1000
)

// component names this package in errors.
const component = "mongo inbox"

// Config says where the inbox collection lives. The zero value of every field but Database
// means its default.
type Config struct {
	// Database holds the inbox collection. Required.
	Database string
	// Collection is the inbox collection's name. Default "inbox" (DefaultCollection).
	Collection string
}

func (c Config) withDefaults() Config {
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.Database == "" {
		return &outbox.ConfigError{Component: component, Field: "Database", Problem: "is empty"}
	}
	if err := backend.CheckIdentifier(component, "Database", c.Database); err != nil {
		return err
	}
	return backend.CheckIdentifier(component, "Collection", c.Collection)
}

// String describes the config.
func (c Config) String() string {
	c = c.withDefaults()
	return fmt.Sprintf("inbox.Config{Database:%q Collection:%q}", c.Database, c.Collection)
}
