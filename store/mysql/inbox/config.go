package inbox

import (
	"time"

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
const component = "mysql inbox"

// Config says which table holds the inbox. The zero value of every field means its default.
type Config struct {
	// Table is the inbox table's name, an identifier (backend.CheckIdentifier), always quoted.
	// Default DefaultTable.
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
	return backend.CheckIdentifier(component, "Table", c.withDefaults().Table)
}
