package dedup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/txoutbox/outbox/middleware/dedup"
	"github.com/txoutbox/outbox/outboxtest"
)

// testStore states the Store contract; both stores run it.
func testStore(t *testing.T, s dedup.Store) {
	ctx := context.Background()
	ids := []string{"a", "b", "c"}

	seen, err := s.Seen(ctx, ids)
	if err != nil || len(seen) != 0 {
		t.Fatalf("fresh store: seen %v, %v; want nothing", seen, err)
	}
	if err := s.Mark(ctx, ids[:2], time.Minute); err != nil {
		t.Fatal(err)
	}
	seen, err = s.Seen(ctx, ids)
	if err != nil || len(seen) != 2 || !seen["a"] || !seen["b"] {
		t.Fatalf("after marking a and b: seen %v, %v", seen, err)
	}
	if seen, err := s.Seen(ctx, nil); err != nil || len(seen) != 0 {
		t.Fatalf("no ids: %v, %v", seen, err)
	}

	if err := s.Mark(ctx, []string{"short"}, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// Expiry is the store's job (Redis: the key's TTL); waiting past it is the only way to see it.
	time.Sleep(300 * time.Millisecond)
	seen, err = s.Seen(ctx, []string{"short", "a"})
	if err != nil || seen["short"] || !seen["a"] {
		t.Fatalf("after the short mark expired: seen %v, %v; want only a", seen, err)
	}
}

func TestMemoryStore(t *testing.T) {
	testStore(t, memoryStore(t))
}

func TestMemoryStoreIsBounded(t *testing.T) {
	s, err := dedup.NewMemoryStore(dedup.MemoryConfig{MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"1", "2", "3", "1", "4"} { // re-marking 1 makes 2 the oldest
		if err := s.Mark(ctx, []string{id}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 3 {
		t.Fatalf("len %d, want the bound 3", s.Len())
	}
	seen, _ := s.Seen(ctx, []string{"1", "2", "3", "4"})
	if len(seen) != 3 || seen["2"] {
		t.Fatalf("seen %v, want 1, 3 and 4: the least recently marked goes first", seen)
	}
}

// redisClient connects to the test Redis or skips (fails in CI) when it is not there.
func redisClient(t *testing.T) redis.UniversalClient {
	t.Helper()
	addr := outboxtest.ServiceAddr("OUTBOX_TEST_REDIS_ADDR", "127.0.0.1:6379")
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		outboxtest.NeedService(t, "Redis", err)
	}
	return c
}

// redisStore returns a store under a prefix of its own, deleting its keys after the test.
func redisStore(t *testing.T, c redis.UniversalClient) (*dedup.RedisStore, string) {
	t.Helper()
	prefix := fmt.Sprintf("outboxtest:dedup:%s:%d:", t.Name(), time.Now().UnixNano())
	s, err := dedup.NewRedisStore(dedup.RedisConfig{Client: c, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := c.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return s, prefix
}

func TestRedisStore(t *testing.T) {
	c := redisClient(t)
	s, prefix := redisStore(t, c)
	testStore(t, s)

	ttl, err := c.PTTL(context.Background(), prefix+"a").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Errorf("key %sa: ttl %v, %v; want the mark's expiry", prefix, ttl, err)
	}
	other, _ := redisStore(t, c)
	if seen, err := other.Seen(context.Background(), []string{"a"}); err != nil || len(seen) != 0 {
		t.Errorf("another prefix sees %v, %v; prefixes must isolate", seen, err)
	}
}
