package outbox

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter and a cap.
type Backoff struct {
	// Initial is the delay after the first failure. Default 1s.
	Initial time.Duration
	// Max caps every delay. Default 5m.
	Max time.Duration
	// Multiplier grows the delay after each failure. Default 2.
	Multiplier float64
	// Jitter randomises each delay by up to this fraction either way, so relays that failed
	// together do not retry together. Default 0.2; negative means none.
	Jitter float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max == 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultBackoffMultiplier
	}
	if b.Jitter == 0 {
		b.Jitter = DefaultBackoffJitter
	}
	return b
}

// Validate names the first invalid field, reported as field.Initial, field.Max and so on of
// component's config (e.g. Validate("retry", "Backoff")). Zero values are valid: they mean the
// default.
func (b Backoff) Validate(component, field string) error {
	switch {
	case b.Initial < 0:
		return &ConfigError{Component: component, Field: field + ".Initial", Problem: "is negative"}
	case b.Max < 0:
		return &ConfigError{Component: component, Field: field + ".Max", Problem: "is negative"}
	case b.Max > 0 && b.Max < b.Initial:
		return &ConfigError{Component: component, Field: field + ".Max", Problem: "is below Initial"}
	case b.Multiplier != 0 && b.Multiplier < 1:
		return &ConfigError{Component: component, Field: field + ".Multiplier", Problem: "is below 1"}
	case b.Jitter >= 1:
		return &ConfigError{Component: component, Field: field + ".Jitter", Problem: "must be below 1"}
	}
	return nil
}

// Delay returns the wait after the n-th consecutive failure (n >= 1). Unset fields take their
// defaults. The arithmetic saturates at Max, whatever Max and n are.
func (b Backoff) Delay(n int) time.Duration {
	b = b.withDefaults()
	if n < 1 {
		n = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(n-1))
	if b.Jitter > 0 {
		d *= 1 + b.Jitter*(2*rand.Float64()-1)
	}
	// Compare in float64 before converting: a float64 at or above 2^63 does not convert to an
	// int64 (it wraps negative), and Max itself may be close to that.
	if math.IsNaN(d) || d >= float64(b.Max) {
		return b.Max
	}
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}
