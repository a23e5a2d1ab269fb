package console

import (
	"fmt"
	"regexp"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
)

// Defaults of Config.
const (
	// DefaultPageSize is how many dead letters a page or an API listing shows when none is asked.
	DefaultPageSize = 100
	// DefaultMaxBulk bounds how many dead letters one bulk requeue or purge may touch: the console
	// resolves the matching IDs before acting (so it acts on exactly what was confirmed), and
	// a larger set belongs to the CLI (outbox dead requeue|purge).
	DefaultMaxBulk = 10000
	// DefaultSessionTTL is how long a login lasts.
	DefaultSessionTTL = 8 * time.Hour
	// MinTokenLength bounds Config.Token from below: a token is all that guards mutations.
	MinTokenLength = 16
	// MaxFilterBytes bounds a filter's text (type, key and error substring together).
	MaxFilterBytes = 1 << 10
	// MaxFilterIDs bounds how many IDs an API filter may list.
	MaxFilterIDs = 1000
)

// Outbox is one outbox the console shows.
type Outbox struct {
	// Name appears in the pages and in URLs: letters, digits, '.', '_' and '-', at most 64.
	Name string
	// Store is the outbox's store; it must implement outbox.Inspector.
	Store outbox.Store
}

// Config configures New.
type Config struct {
	// Outboxes lists what the console shows, in this order. At least one; names are unique.
	Outboxes []Outbox
	// Token guards every mutation: forms need a login with it, the API a Bearer header with it.
	// At least MinTokenLength bytes, unless ReadOnly (where it is ignored).
	Token outbox.Secret
	// ReadOnly refuses every mutation with 403 Forbidden. Default false.
	ReadOnly bool
	// HidePayloads never shows a payload or a result, in the pages or the API. Default false.
	HidePayloads bool
	// Logger receives one line per mutation (who, what filter, how many) and store failures;
	// never a payload or the token. Default zap.NewNop().
	Logger *zap.Logger
	// PageSize is how many dead letters a listing shows. Default DefaultPageSize.
	PageSize int
	// MaxBulk bounds how many dead letters one bulk requeue or purge touches. Default
	// DefaultMaxBulk.
	MaxBulk int
	// SessionTTL is how long a login lasts. Default DefaultSessionTTL.
	SessionTTL time.Duration
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.MaxBulk == 0 {
		c.MaxBulk = DefaultMaxBulk
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	return c
}

// Validate names the first invalid field.
func (c Config) Validate() error {
	if len(c.Outboxes) == 0 {
		return configError("Outboxes", "is empty")
	}
	seen := map[string]bool{}
	for i, o := range c.Outboxes {
		field := fmt.Sprintf("Outboxes[%d]", i)
		switch {
		case !validName.MatchString(o.Name):
			return configError(field+".Name", fmt.Sprintf("%q is not 1 to 64 letters, digits, '.', '_' or '-'", o.Name))
		case seen[o.Name]:
			return configError(field+".Name", fmt.Sprintf("%q is listed twice", o.Name))
		case o.Store == nil:
			return configError(field+".Store", "is nil")
		}
		if _, ok := o.Store.(outbox.Inspector); !ok {
			return configError(field+".Store", fmt.Sprintf("%T does not implement outbox.Inspector", o.Store))
		}
		seen[o.Name] = true
	}
	if !c.ReadOnly && len(c.Token) < MinTokenLength {
		return configError("Token", fmt.Sprintf("is shorter than %d bytes: set a token, or ReadOnly", MinTokenLength))
	}
	if c.PageSize < 0 {
		return configError("PageSize", "is negative")
	}
	if c.MaxBulk < 0 {
		return configError("MaxBulk", "is negative")
	}
	if c.SessionTTL < 0 {
		return configError("SessionTTL", "is negative")
	}
	return nil
}

func configError(field, problem string) error {
	return &outbox.ConfigError{Component: "console", Field: field, Problem: problem}
}
