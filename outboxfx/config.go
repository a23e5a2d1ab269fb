package outboxfx

import (
	"fmt"

	"github.com/txoutbox/outbox"
)

// Config configures the relay Module runs. The zero value runs a relay with the root package's defaults.
type Config struct {
	// Relay tunes the relay; each field's default is documented on outbox.Config. Its Logger and
	// Middleware, when unset, come from the application (*zap.Logger, []outbox.Middleware).
	Relay outbox.Config
	// Disabled builds the relay but never starts it, for processes that only write events
	// (several API replicas, one relay worker) from the same image. Default false.
	Disabled bool
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if err := c.Relay.Validate(); err != nil {
		return fmt.Errorf("outboxfx: %w", err)
	}
	return nil
}
