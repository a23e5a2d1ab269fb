package inbox

import (
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Defaults of Config and of retention.
const (
	// DefaultTable is the inbox table's name.
	DefaultTable = "inbox"
	// DefaultRetention is a retention window that outlasts SQS's longest message retention
	// period (14 days) by a day: a record pruned at that age can no longer meet a redelivery.
	DefaultRetention = 15 * 24 * time.Hour
	// DefaultPruneBatch is how many records one DELETE of Prune removes at most.
	DefaultPruneBatch = 1000
)

// component names this package in errors.
const component = "sqlite inbox"

// Config says which table holds the inbox. The zero value of every field means its default.
type Config struct {
	// Table is the inbox table's name. It must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$, must not
	// start with sqlite_ (reserved by SQLite), and is always quoted. Default "inbox".
	Table string
}

func (c Config) withDefaults() Config {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := backend.CheckIdentifier(component, "Table", c.Table); err != nil {
		return err
	}
	if strings.HasPrefix(strings.ToLower(c.Table), "sqlite_") {
		return &outbox.ConfigError{Component: component, Field: "Table", Problem: fmt.Sprintf("%q uses the prefix sqlite_, which SQLite reserves", c.Table)}
	}
	return nil
}
