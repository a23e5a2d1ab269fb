package dedup

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/txoutbox/outbox"
)

// RedisConfig configures a RedisStore.
type RedisConfig struct {
	// Client is the service's own Redis client (a *redis.Client, *redis.ClusterClient or
	// *redis.Ring). Required. The store never closes it.
	Client redis.UniversalClient
	// Prefix namespaces the store's keys: one key per ID, Prefix+ID. Default "outbox:dedup:".
	Prefix string
}

func (c RedisConfig) withDefaults() RedisConfig {
	if c.Prefix == "" {
		c.Prefix = "outbox:dedup:"
	}
	return c
}

// Validate names the first invalid field.
func (c RedisConfig) Validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "dedup", Field: field, Problem: problem}
	}
	switch {
	case c.Client == nil:
		return bad("Client", "is nil")
	case len(c.Prefix) > 256:
		return bad("Prefix", "is longer than 256 bytes")
	}
	return nil
}

// RedisStore is a Store in Redis, shared by every relay that uses the same Prefix. Each batch is
// one pipelined round trip; each ID is its own key expiring with its mark, so Redis itself
// forgets old IDs and the store works on Redis Cluster too.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store over cfg.Client, or the error cfg.Validate reports.
func NewRedisStore(cfg RedisConfig) (*RedisStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &RedisStore{client: cfg.Client, prefix: cfg.Prefix}, nil
}

// Seen implements Store.
func (s *RedisStore) Seen(ctx context.Context, ids []string) (map[string]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, s.prefix+id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dedup: redis: seen: %w", err)
	}
	var seen map[string]bool
	for i, cmd := range cmds {
		if cmd.Val() > 0 {
			if seen == nil {
				seen = make(map[string]bool)
			}
			seen[ids[i]] = true
		}
	}
	return seen, nil
}

// Mark implements Store.
func (s *RedisStore) Mark(ctx context.Context, ids []string, ttl time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Set(ctx, s.prefix+id, 1, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dedup: redis: mark: %w", err)
	}
	return nil
}
