package fxmodule

import (
	"fmt"

	"github.com/txoutbox/outbox/core"
)

// Config configures the relay Module runs. The zero value runs a relay with core's defaults.
type Config struct {
	// Relay tunes the relay; each field's default is documented on core.Config. Its Logger and
	// Middleware, when unset, come from the application (*zap.Logger, []core.Middleware).
	Relay core.Config
	// Disabled builds the relay but never starts it, for processes that only write events
	// (several API replicas, one relay worker) from the same image. Default false.
	Disabled bool
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if err := c.Relay.Validate(); err != nil {
		return fmt.Errorf("fxmodule: %w", err)
	}
	return nil
}
