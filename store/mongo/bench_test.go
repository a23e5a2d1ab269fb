package mongo

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
)

// The benchmarks drain and fill a backlog on the server the tests use: the replica set when
// OUTBOX_TEST_MONGO_URI is set, FerretDB otherwise. Each has a raw baseline doing the least the
// driver can do for the same result in the same run, so the store's cost is read as a ratio:
//
//	go test -run '^$' -bench . -benchtime 1000x ./store/mongo
const benchBatch = 100

func benchStore(b *testing.B) *Store {
	if outboxtest.ServiceAddr(mongoURIEnv, "") != "" {
		return openReplicaSet(b, Config{})
	}
	return openFerret(b, Config{})
}

// fill writes n messages over 500 keys through the store's insert path, outside the timer.
// Consecutive messages have different keys, so an ordered claim can fill a batch with heads.
func fill(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := context.Background()
	for n > 0 {
		size := min(n, 1000)
		msgs := outboxtest.NewMessages(size, "BENCH", "")
		for i, m := range msgs {
			m.Key = "k" + strconv.Itoa(i%500)
		}
		if err := s.add(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		n -= size
	}
}

// BenchmarkDrain: claim 100, ack 100, until the backlog of b.N messages is gone.
func BenchmarkDrain(b *testing.B) {
	for _, ordered := range []bool{false, true} {
		name := "Unordered"
		if ordered {
			name = "Ordered"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b)
			fill(b, s, b.N)
			ctx := context.Background()
			req := outbox.ClaimRequest{Token: "bench", Limit: benchBatch, Lease: time.Minute, Ordered: ordered}
			b.ResetTimer()
			drained := 0
			for drained < b.N {
				msgs, err := s.Claim(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) == 0 {
					b.Fatalf("drained %d of %d", drained, b.N)
				}
				if _, err := s.Ack(ctx, req.Token, outboxtest.IDs(msgs)); err != nil {
					b.Fatal(err)
				}
				drained += len(msgs)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkDrainRaw is the baseline: read 100 pending documents oldest first and delete them,
// with no lease (so no safety across relays) and no decoding.
func BenchmarkDrainRaw(b *testing.B) {
	s := benchStore(b)
	fill(b, s, b.N)
	ctx := context.Background()
	b.ResetTimer()
	drained := 0
	for drained < b.N {
		cur, err := s.coll.Find(ctx, dueFilter(time.Now()), options.Find().
			SetSort(bson.D{{Key: fAvailableAt, Value: 1}, {Key: fID, Value: 1}}).SetLimit(benchBatch))
		if err != nil {
			b.Fatal(err)
		}
		var docs []bson.Raw
		if err := cur.All(ctx, &docs); err != nil {
			b.Fatal(err)
		}
		if len(docs) == 0 {
			b.Fatalf("drained %d of %d", drained, b.N)
		}
		ids := make(bson.A, len(docs))
		for i, d := range docs {
			ids[i] = d.Lookup(fID)
		}
		if _, err := s.coll.DeleteMany(ctx, bson.D{{Key: fID, Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
			b.Fatal(err)
		}
		drained += len(docs)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkWrite: one message per write through the store's insert path (Prepare, the key's
// counter, insert), against the baseline of inserting the same document directly. On a replica
// set both run in a transaction, as Execute would; FerretDB has none.
func BenchmarkWrite(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	transactional := outboxtest.ServiceAddr(mongoURIEnv, "") != ""
	write := func(fn func(ctx context.Context) error) {
		if !transactional {
			if err := fn(ctx); err != nil {
				b.Fatal(err)
			}
			return
		}
		err := s.client.UseSession(ctx, func(ctx context.Context) error {
			_, err := mongo.SessionFromContext(ctx).WithTransaction(ctx, func(ctx context.Context) (any, error) { return nil, fn(ctx) })
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Run("Store", func(b *testing.B) {
		for b.Loop() {
			write(func(ctx context.Context) error { return s.add(ctx, outboxtest.NewMessages(1, "BENCH", "k")) })
		}
	})
	b.Run("Raw", func(b *testing.B) {
		for b.Loop() {
			write(func(ctx context.Context) error {
				m := outboxtest.NewMessages(1, "BENCH", "k")[0]
				if err := backend.Prepare(ctx, []*outbox.Message{m}, backend.WriteOptions{}); err != nil {
					return err
				}
				_, err := s.coll.InsertOne(ctx, newDocument(m, 0, time.Now()))
				return err
			})
		}
	})
}
