package mongo

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

var (
	// ErrTransactionsUnsupported is returned by Add and Execute, before anything is written, when
	// the server cannot run multi-document transactions: a standalone mongod (transactions need a
	// replica set or a sharded cluster; a single-node replica set is enough), or a server that
	// accepts the transaction fields without honouring them. Writing the events outside a
	// transaction could publish events of a change that rolled back, so the store refuses.
	ErrTransactionsUnsupported = errors.New("mongo: transactions unsupported by this server (a replica set or sharded cluster is required)")
	// ErrNoTransaction is returned by Add when ctx carries no session with a running
	// transaction: the events would commit on their own, whatever becomes of the business
	// change. Call Add inside session.WithTransaction (with its callback's ctx) or use Execute.
	ErrNoTransaction = errors.New("mongo: add: ctx carries no running transaction (use the ctx of session.WithTransaction's callback, or Execute)")
)

// unsupportedError is ErrTransactionsUnsupported with the reason found.
type unsupportedError struct{ reason string }

func (e *unsupportedError) Error() string {
	return ErrTransactionsUnsupported.Error() + ": " + e.reason
}
func (e *unsupportedError) Is(target error) bool { return target == ErrTransactionsUnsupported }

// CheckTransactions reports whether the server runs transactions, with
// ErrTransactionsUnsupported (and the reason) when it does not. Add and Execute call it; a
// success or an unsupported verdict is remembered, a network error is not.
//
// A server is asked twice: its hello reply must name a replica set or say it is a mongos, and a
// read-only transaction must commit. The second catches servers that present themselves as a
// replica set but ignore transactions (FerretDB started with --repl-set-name): writes in them
// would be applied at once, and only the commit would fail.
func (s *Store) CheckTransactions(ctx context.Context) error {
	if err := s.checkOpen("check transactions"); err != nil {
		return err
	}
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.txOK {
		return nil
	}
	if s.txCheck != nil {
		return s.txCheck
	}
	// The caller's ctx may carry its own transaction; the probe must run outside it.
	ctx = mongo.NewSessionContext(ctx, nil)
	err := s.probeTransactions(ctx)
	var unsupported *unsupportedError
	switch {
	case err == nil:
		s.txOK = true
	case errors.As(err, &unsupported):
		s.txCheck = err
	}
	return err
}

func (s *Store) probeTransactions(ctx context.Context) error {
	refused, err := ProbeTransactions(ctx, s.client, s.coll)
	switch {
	case err != nil:
		return s.wrap("check transactions", err)
	case refused != "":
		return &unsupportedError{reason: refused}
	}
	return nil
}

// ProbeTransactions finds out whether the server behind client runs multi-document transactions:
// hello must name a replica set or a mongos and report sessions, and a read-only transaction on
// coll must commit (which also catches servers that pretend to be a replica set). It returns why
// the server refuses transactions, or the error of a probe that could not finish. The store and
// its inbox both ask it.
func ProbeTransactions(ctx context.Context, client *mongo.Client, coll *mongo.Collection) (refused string, err error) {
	var hello struct {
		SetName                      string `bson:"setName"`
		Msg                          string `bson:"msg"`
		LogicalSessionTimeoutMinutes *int64 `bson:"logicalSessionTimeoutMinutes"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return "", fmt.Errorf("hello: %w", err)
	}
	switch {
	case hello.SetName == "" && hello.Msg != "isdbgrid":
		return "the server is standalone (hello names no replica set and it is not a mongos)", nil
	case hello.LogicalSessionTimeoutMinutes == nil:
		return "the server does not support sessions", nil
	}

	sess, err := client.StartSession()
	if err != nil {
		return "", fmt.Errorf("start session: %w", err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	if err := sess.StartTransaction(); err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	sctx := mongo.NewSessionContext(ctx, sess)
	if err := coll.FindOne(sctx, bson.D{{Key: fID, Value: "transaction-probe"}}).Err(); err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		if reason, ok := rejectsTransactions(err); ok {
			return reason, nil
		}
		return "", fmt.Errorf("read: %w", err)
	}
	if err := sess.CommitTransaction(ctx); err != nil {
		if reason, ok := rejectsTransactions(err); ok {
			return reason, nil
		}
		return "", fmt.Errorf("commit: %w", err)
	}
	return "", nil
}

// rejectsTransactions tells a server's refusal of transactions from a passing failure.
func rejectsTransactions(err error) (string, bool) {
	var ce mongo.CommandError
	if !errors.As(err, &ce) {
		return "", false
	}
	switch ce.Code {
	case 20, 59, 115, 263: // IllegalOperation, CommandNotFound, CommandNotSupported, OperationNotSupportedInTransaction
		return fmt.Sprintf("the server rejected a transaction: (%s) %s", ce.Name, ce.Message), true
	}
	return "", false
}
