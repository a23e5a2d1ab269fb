package kafkabench

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The ordered raw loop is a fair baseline only if it keeps each key's order, as the relay does:
// read its topic back and check every key's events arrive in the order they were made.
func TestRawOrderedKeepsKeyOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := &bench{cfg: Config{Events: 20000, Keys: 10, Ordered: true}.withDefaults()}
	if err := b.setup(ctx); err != nil {
		b.teardown()
		t.Fatal(err)
	}
	defer b.teardown()
	for _, preEncoded := range []bool{false, true} {
		if _, err := b.raw(ctx, preEncoded); err != nil {
			t.Fatal(err)
		}
		topic := b.topics[len(b.topics)-1]
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		last := map[string]int{}
		seen := 0
		for seen < b.cfg.Events && ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			if err := fetches.Err0(); err != nil && ctx.Err() == nil {
				t.Fatal(err)
			}
			fetches.EachRecord(func(r *kgo.Record) {
				if strings.HasPrefix(string(r.Key), warmUpKeyPrefix) {
					return // a warm-up record
				}
				var env struct {
					Payload struct {
						N int `json:"n"`
					} `json:"payload"`
				}
				if err := json.Unmarshal(r.Value, &env); err != nil {
					t.Fatalf("record value %q: %v", r.Value, err)
				}
				n, key := env.Payload.N, string(r.Key)
				if prev, ok := last[key]; ok && n <= prev {
					t.Errorf("pre-encoded=%t: key %s: event %d after event %d", preEncoded, key, n, prev)
				}
				last[key] = n
				seen++
			})
		}
		cl.Close()
		if seen != b.cfg.Events {
			t.Fatalf("pre-encoded=%t: read %d of %d events", preEncoded, seen, b.cfg.Events)
		}
	}
}
