package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// maxKnownKeys bounds the memory of keys whose counter document exists; past it the memory
// starts over, which only costs one idempotent upsert per key.
const maxKnownKeys = 100_000

// Add stores msgs in the transaction that ctx carries: the callback ctx of
// session.WithTransaction, or a ctx made with mongo.NewSessionContext around a session that
// started a transaction. The messages commit or abort with it. Add runs backend.Prepare (write
// hooks, ID, CreatedAt, validation) first, so a bad message is refused before anything is sent.
//
// Outside a transaction Add returns ErrNoTransaction, and on a server without transactions
// ErrTransactionsUnsupported: events written on their own could be published for a change that
// was rolled back. Inside session.WithTransaction the callback may run more than once (the
// driver retries transient errors); Add keeps the IDs Prepare assigned on the first run, so
// build messages inside the callback if each attempt should get fresh ones.
func (s *Store) Add(ctx context.Context, msgs ...*outbox.Message) error {
	if err := s.checkOpen("add"); err != nil {
		return err
	}
	sess := mongo.SessionFromContext(ctx)
	if sess == nil || !sess.TransactionRunning() {
		return ErrNoTransaction
	}
	if sess.Client() != s.client {
		return fmt.Errorf("mongo: add: the session belongs to another client than the store's")
	}
	if err := s.CheckTransactions(ctx); err != nil {
		return err
	}
	return s.add(ctx, msgs)
}

// add prepares and inserts msgs with ctx's session; the transaction checks are done.
func (s *Store) add(ctx context.Context, msgs []*outbox.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := backend.Prepare(ctx, msgs, backend.WriteOptions{MaxPayloadBytes: s.cfg.MaxPayloadBytes, Hooks: s.cfg.WriteHooks}); err != nil {
		return fmt.Errorf("mongo: add: %w", err)
	}
	seqs, err := s.nextSeqs(ctx, msgs)
	if err != nil {
		return err
	}
	due := s.now(ctx)
	docs := make([]any, len(msgs))
	for i, m := range msgs {
		docs[i] = newDocument(m, seqs[i], due)
	}
	if _, err := s.coll.InsertMany(ctx, docs); err != nil {
		return s.wrap("add", err)
	}
	return nil
}

// nextSeqs takes the next sequence numbers of each Key in msgs from its counter document, in
// ctx's transaction; messages without a Key get 0. Two transactions writing the same Key
// conflict on the counter (a write conflict, which transactions retry), so one commits before
// the other takes its number and seq follows commit order.
//
// The increment upserts: a counter created in the transaction commits with it. A counter
// created by another transaction after this one's snapshot also surfaces as a write conflict
// and a retry with a fresh snapshot.
func (s *Store) nextSeqs(ctx context.Context, msgs []*outbox.Message) ([]int64, error) {
	seqs := make([]int64, len(msgs))
	counts := map[string]int64{}
	var keys []string
	for _, m := range msgs {
		if m.Key == "" {
			continue
		}
		if counts[m.Key] == 0 {
			keys = append(keys, m.Key)
		}
		counts[m.Key]++
	}
	next := make(map[string]int64, len(keys))
	for _, k := range keys {
		var counter struct {
			N int64 `bson:"n"`
		}
		err := s.seqs.FindOneAndUpdate(ctx,
			bson.D{{Key: fID, Value: k}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: counts[k]}}}},
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After),
		).Decode(&counter)
		if err != nil {
			return nil, s.wrap("add: sequence of key "+k, err)
		}
		next[k] = counter.N - counts[k] + 1
	}
	for i, m := range msgs {
		if m.Key != "" {
			seqs[i] = next[m.Key]
			next[m.Key]++
		}
	}
	return seqs, nil
}

// ensureCounters creates the missing counter documents of msgs' keys outside any transaction,
// before Execute starts one: a counter that exists before the transaction's snapshot is simply
// incremented, where two first writers of a Key creating it inside their transactions would
// conflict. A counter at 0 means nothing, so creating it early is harmless.
func (s *Store) ensureCounters(ctx context.Context, msgs []*outbox.Message) error {
	s.keysMu.Lock()
	var missing []string
	for _, m := range msgs {
		if _, ok := s.keys[m.Key]; m.Key != "" && !ok && !slices.Contains(missing, m.Key) {
			missing = append(missing, m.Key)
		}
	}
	s.keysMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(missing))
	for i, k := range missing {
		models[i] = mongo.NewUpdateOneModel().
			SetFilter(bson.D{{Key: fID, Value: k}}).
			SetUpdate(bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "n", Value: int64(0)}}}}).
			SetUpsert(true)
	}
	noTx := mongo.NewSessionContext(ctx, nil)
	if _, err := s.seqs.BulkWrite(noTx, models, options.BulkWrite().SetOrdered(false)); err != nil && !mongo.IsDuplicateKeyError(err) {
		// A duplicate key means a concurrent writer created the counter first: it exists.
		return s.wrap("execute: create key counters", err)
	}
	s.keysMu.Lock()
	if len(s.keys)+len(missing) > maxKnownKeys {
		s.keys = map[string]struct{}{}
	}
	for _, k := range missing {
		s.keys[k] = struct{}{}
	}
	s.keysMu.Unlock()
	return nil
}

// Execute is the origin package's executeWithOutbox: it runs fn in a transaction
// (session.WithTransaction), stores msgs in the same transaction with fn's result as JSON in
// Result (for messages that have none), and commits. When fn fails, the result cannot be
// encoded, or the messages cannot be stored, the transaction is aborted and nothing is written;
// a panic in fn aborts it too and is re-raised.
//
// fn must do its writes with the ctx it is given (which carries the session). The driver runs
// fn again when the transaction fails with a transient error (a write conflict, a primary
// stepping down), so fn must be safe to retry; each attempt gets fresh IDs and timestamps for
// messages that had none. On a server without transactions Execute returns
// ErrTransactionsUnsupported before fn runs.
func Execute[T any](ctx context.Context, s *Store, fn func(ctx context.Context) (T, error), msgs ...*outbox.Message) (T, error) {
	var zero T
	if err := s.checkOpen("execute"); err != nil {
		return zero, err
	}
	if fn == nil {
		return zero, &outbox.ConfigError{Component: "mongo", Field: "fn", Problem: "is nil"}
	}
	for i, m := range msgs {
		if m == nil {
			return zero, fmt.Errorf("mongo: execute: message %d: %w", i, &outbox.FieldError{Field: "message", Problem: "is nil"})
		}
	}
	if err := s.CheckTransactions(ctx); err != nil {
		return zero, err
	}
	if err := s.ensureCounters(ctx, msgs); err != nil {
		return zero, err
	}
	sess, err := s.client.StartSession()
	if err != nil {
		return zero, s.wrap("execute: start session", err)
	}
	// EndSession aborts a transaction still open, which is what a panic in fn leaves behind.
	defer sess.EndSession(context.WithoutCancel(ctx))

	// What the caller left unset is filled in again on every attempt.
	type unset struct{ id, created, result bool }
	blank := make([]unset, len(msgs))
	for i, m := range msgs {
		blank[i] = unset{id: m.ID == "", created: m.CreatedAt.IsZero(), result: len(m.Result) == 0}
	}
	var cbErr error // the last error of fn or of storing: returned as is, not wrapped again
	out, err := sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		cbErr = nil
		for i, m := range msgs {
			if blank[i].id {
				m.ID = ""
			}
			if blank[i].created {
				m.CreatedAt = time.Time{}
			}
			if blank[i].result {
				m.Result = nil
			}
		}
		v, err := fn(ctx)
		if err != nil {
			cbErr = err
			return v, err
		}
		if len(msgs) > 0 {
			result, err := json.Marshal(v)
			if err != nil {
				cbErr = fmt.Errorf("mongo: execute: encode result as JSON: %w", err)
				return v, cbErr
			}
			for i, m := range msgs {
				if blank[i].result {
					m.Result = result
				}
			}
		}
		cbErr = s.add(ctx, msgs)
		return v, cbErr
	})
	v, _ := out.(T) // not a plain assertion: out is a nil interface when T is one and fn returned nil
	switch {
	case err == nil:
		return v, nil
	case cbErr != nil && err == cbErr:
		return v, err
	default:
		return v, s.wrap("execute", err)
	}
}
