package middleware_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/middleware/dedup"
	"github.com/txoutbox/outbox/middleware/logging"
	"github.com/txoutbox/outbox/middleware/metrics"
	"github.com/txoutbox/outbox/middleware/retry"
	"github.com/txoutbox/outbox/middleware/tracing"
	"github.com/txoutbox/outbox/outboxtest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	batchSize = 100
	// batches rotate so dedup always meets IDs it no longer remembers (its bound is below
	// batches*batchSize): the benchmark measures a lookup miss plus a mark, the common case.
	batches = 1000
)

// encodingTransport is the baseline: it encodes each message's envelope, the least work any
// real transport does before touching the network.
func encodingTransport() outbox.Handler {
	buf := make([]byte, 0, 1024)
	return func(ctx context.Context, msgs []*outbox.Message) error {
		for _, m := range msgs {
			var err error
			if buf, err = backend.EncodeEnvelope(buf[:0], m); err != nil {
				return err
			}
		}
		return nil
	}
}

func benchBatches(b *testing.B) [][]*outbox.Message {
	out := make([][]*outbox.Message, batches)
	for i := range out {
		out[i] = outboxtest.NewMessages(batchSize, "ORDER_PLACED", fmt.Sprintf("order-%d", i))
		if err := backend.Prepare(context.Background(), out[i], backend.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

// must returns a function that unwraps a Config.Middleware result, failing b on an error.
func must(b *testing.B) func(outbox.Middleware, error) outbox.Middleware {
	return func(mw outbox.Middleware, err error) outbox.Middleware {
		if err != nil {
			b.Fatal(err)
		}
		return mw
	}
}

func memoryDedup(b *testing.B) outbox.Middleware {
	s, err := dedup.NewMemoryStore(dedup.MemoryConfig{MaxEntries: batches * batchSize / 2})
	if err != nil {
		b.Fatal(err)
	}
	return must(b)(dedup.Config{Store: s}.Middleware())
}

func tracingMW(b *testing.B) outbox.Middleware {
	// Spans are recorded but exported nowhere: the cost measured is the middleware's own.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return must(b)(tracing.Config{TracerProvider: tp}.Middleware())
}

func loggingMW(b *testing.B) outbox.Middleware {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zap.InfoLevel))
	return must(b)(logging.Config{Logger: log}.Middleware())
}

func metricsMW(b *testing.B) outbox.Middleware {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return must(b)(metrics.Config{MeterProvider: mp}.Middleware())
}

// BenchmarkMiddleware publishes batches of 100 through each middleware in front of the
// encoding baseline. Compare each ns/msg with raw's from the same run:
//
//	cd middleware && go test -run '^$' -bench BenchmarkMiddleware -benchmem .
func BenchmarkMiddleware(b *testing.B) {
	cases := []struct {
		name string
		mws  func(b *testing.B) []outbox.Middleware
	}{
		{"raw", func(*testing.B) []outbox.Middleware { return nil }},
		{"retry", func(b *testing.B) []outbox.Middleware {
			return []outbox.Middleware{must(b)(retry.Config{}.Middleware())}
		}},
		{"dedup-memory", func(b *testing.B) []outbox.Middleware { return []outbox.Middleware{memoryDedup(b)} }},
		{"dedup-redis", func(b *testing.B) []outbox.Middleware { return []outbox.Middleware{redisDedup(b)} }},
		{"tracing", func(b *testing.B) []outbox.Middleware { return []outbox.Middleware{tracingMW(b)} }},
		{"logging", func(b *testing.B) []outbox.Middleware { return []outbox.Middleware{loggingMW(b)} }},
		{"metrics", func(b *testing.B) []outbox.Middleware { return []outbox.Middleware{metricsMW(b)} }},
		{"all-but-redis", func(b *testing.B) []outbox.Middleware {
			return []outbox.Middleware{loggingMW(b), metricsMW(b), memoryDedup(b), tracingMW(b), must(b)(retry.Config{}.Middleware())}
		}},
	}
	data := benchBatches(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := outbox.Chain(encodingTransport(), c.mws(b)...)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := h(ctx, data[i%batches]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchSize), "ns/msg")
		})
	}
}

func redisDedup(b *testing.B) outbox.Middleware {
	addr := outboxtest.ServiceAddr("OUTBOX_TEST_REDIS_ADDR", "127.0.0.1:6379")
	c := redis.NewClient(&redis.Options{Addr: addr})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		outboxtest.NeedService(b, "Redis", err)
	}
	prefix := fmt.Sprintf("outboxbench:%d:", time.Now().UnixNano())
	b.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		for len(keys) > 0 {
			n := min(len(keys), 1000)
			c.Del(ctx, keys[:n]...)
			keys = keys[n:]
		}
		_ = c.Close()
	})
	s, err := dedup.NewRedisStore(dedup.RedisConfig{Client: c, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	// Batches repeat after 1000 iterations; with a TTL of a second most repeats are misses too.
	return must(b)(dedup.Config{Store: s, TTL: time.Second}.Middleware())
}
