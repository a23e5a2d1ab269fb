package inbox

import (
	"fmt"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// Defaults of Config and of retention.
const (
	// DefaultSchema holds the inbox table.
	DefaultSchema = "public"
	// DefaultTable is the inbox table's name.
	DefaultTable = "inbox"
	// DefaultRetention is a retention window that outlasts SQS's longest message retention
	// period (14 days) by a day: a record pruned at that age can no longer meet a redelivery.
	DefaultRetention = 15 * 24 * time.Hour
	// DefaultPruneBatch is how many records one DELETE of Prune removes at most.
	DefaultPruneBatch = 1000
)

// component names this package in errors.
const component = "postgres inbox"

// Config says where the inbox table lives. The zero value of every field means its default.
type Config struct {
	// Schema holds the inbox table. Default "public" (DefaultSchema).
	Schema string
	// Table is the inbox table's name. Default "inbox" (DefaultTable).
	Table string
}

func (c Config) withDefaults() Config {
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	return c
}

// Validate names the first invalid field. Identifiers must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$
// (backend.CheckIdentifier); they are quoted as well.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := backend.CheckIdentifier(component, "Schema", c.Schema); err != nil {
		return err
	}
	if err := backend.CheckIdentifier(component, "Table", c.Table); err != nil {
		return err
	}
	return nil
}

// String describes the config.
func (c Config) String() string {
	c = c.withDefaults()
	return fmt.Sprintf("inbox.Config{Schema:%q Table:%q}", c.Schema, c.Table)
}
