package mongo

import (
	"context"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// clockRefresh is how often the store measures the server's clock again.
const clockRefresh = time.Minute

// serverClock tells the MongoDB server's time, so that leases, retry times and retention cutoffs
// do not depend on the relay's clock. Updates cannot compute with the server's time on every
// server (pipeline updates with $$NOW are missing from some wire-compatible servers), so the
// store measures the offset of the server's clock from its own with the hello command (the
// server's localTime, against the middle of the round trip) and applies it. A server that does
// not report its time leaves the offset at zero: then the relay host's clock is used, and the
// package doc says so.
type serverClock struct {
	mu       sync.Mutex
	offset   time.Duration
	measured time.Time // zero: never measured
}

// now returns the server's time, measuring the offset first when it is older than clockRefresh.
// A failed measurement keeps the last offset.
func (s *Store) now(ctx context.Context) time.Time {
	c := &s.clock
	c.mu.Lock()
	stale := c.measured.IsZero() || time.Since(c.measured) > clockRefresh
	offset := c.offset
	c.mu.Unlock()
	if stale {
		if measured, ok := s.measureOffset(ctx); ok {
			offset = measured
		}
		c.mu.Lock()
		c.offset, c.measured = offset, time.Now()
		c.mu.Unlock()
	}
	return time.Now().Add(offset).UTC().Truncate(time.Millisecond)
}

// measureOffset runs hello outside ctx's session (ctx may carry a transaction, in which hello
// is not allowed), bounded by five seconds.
func (s *Store) measureOffset(_ context.Context) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sent := time.Now()
	var reply struct {
		LocalTime time.Time `bson:"localTime"`
	}
	err := s.client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&reply)
	received := time.Now()
	if err != nil || reply.LocalTime.IsZero() {
		return 0, false
	}
	mid := sent.Add(received.Sub(sent) / 2)
	return reply.LocalTime.Sub(mid), true
}
