package mongo

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// reopenDelay spaces attempts to reopen a change stream that failed.
const reopenDelay = time.Second

// insertsOnly keeps change events small: the relay only needs to know that something arrived.
var insertsOnly = mongo.Pipeline{
	{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}},
	{{Key: "$project", Value: bson.D{{Key: "_id", Value: 1}}}},
}

// Listen signals inserts into the outbox collection, watched with a change stream. Servers
// without change streams (a standalone mongod, FerretDB) make it return an error at once, and
// the relay polls. A stream that fails later is reopened after its resume token, every second
// until it works again, while polling covers the gap. The channel closes when ctx ends.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := s.checkOpen("listen"); err != nil {
		return nil, err
	}
	stream, err := s.coll.Watch(ctx, insertsOnly)
	if err != nil {
		return nil, s.wrap("listen: change streams unavailable", err)
	}
	signals := make(chan struct{}, 1)
	go s.watch(ctx, stream, signals)
	return signals, nil
}

func (s *Store) watch(ctx context.Context, stream *mongo.ChangeStream, signals chan<- struct{}) {
	defer close(signals)
	for {
		for stream.Next(ctx) {
			select {
			case signals <- struct{}{}:
			default: // a signal is pending already: they coalesce
			}
		}
		resume := stream.ResumeToken()
		_ = stream.Close(context.WithoutCancel(ctx))
		for {
			if !sleepCtx(ctx, reopenDelay) || s.closed.Load() {
				return
			}
			opts := options.ChangeStream()
			if resume != nil {
				opts.SetStartAfter(resume)
			}
			var err error
			if stream, err = s.coll.Watch(ctx, insertsOnly, opts); err == nil {
				break
			}
			// The token may have left the oplog; anything missed is found by polling.
			resume = nil
		}
		// Something may have been inserted while the stream was down.
		select {
		case signals <- struct{}{}:
		default:
		}
	}
}

// sleepCtx waits d and reports false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
