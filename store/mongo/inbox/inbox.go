package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/txoutbox/outbox/backend"
	outboxmongo "github.com/txoutbox/outbox/store/mongo"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/txoutbox/outbox"
)

// ErrTransactionsUnsupported is matched (errors.Is) by Handle's error when the server cannot run
// multi-document transactions: a standalone mongod, or a server that accepts the transaction
// fields without honouring them (FerretDB). Handle then writes nothing.
var ErrTransactionsUnsupported = errors.New(component + ": " + unsupportedText)

const unsupportedText = "transactions unsupported by this server (a replica set or sharded cluster is required)"

// Field names of an inbox document. _id is {c: consumer, m: message ID}, so the collection's own
// unique _id index decides between deliveries.
const (
	fID          = "_id"
	fConsumer    = "c"
	fMessage     = "m"
	fProcessedAt = "processed_at"
)

// Inbox records which messages each consumer has processed, in a MongoDB collection. It is safe
// for concurrent use.
type Inbox struct {
	cfg    Config
	client *mongo.Client
	coll   *mongo.Collection

	txMu    sync.Mutex
	txOK    bool
	txCheck error // the remembered verdict when the server cannot run transactions
}

// New returns an inbox over cfg's collection, using client (which it never disconnects). It
// sends nothing; call EnsureSchema once.
func New(client *mongo.Client, cfg Config) (*Inbox, error) {
	if client == nil {
		return nil, invalid("new", backend.InvalidArgument("client", "is nil"))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Inbox{cfg: cfg, client: client, coll: client.Database(cfg.Database).Collection(cfg.Collection)}, nil
}

// Config returns the config with defaults applied.
func (in *Inbox) Config() Config { return in.cfg }

// EnsureSchema creates the index retention reads (processed_at). It is idempotent.
func (in *Inbox) EnsureSchema(ctx context.Context) error {
	_, err := in.coll.Indexes().CreateOne(ctx, mongo.IndexModel{
		Keys:    bson.D{{Key: fProcessedAt, Value: 1}},
		Options: options.Index().SetName(fProcessedAt),
	})
	if err != nil {
		return fmt.Errorf("%s: ensure schema: %w", component, err)
	}
	return nil
}

// errDuplicate aborts the transaction of a delivery that found its record.
var errDuplicate = errors.New(component + ": duplicate")

// handlerPanic carries a handler's panic out of WithTransaction, which aborts on the error.
type handlerPanic struct{ value any }

func (p *handlerPanic) Error() string {
	return fmt.Sprintf("%s: handler panicked: %v", component, p.value)
}

// Handle processes msg for consumer exactly once. In one transaction it records (consumer,
// msg.ID) and, when that record is new, runs fn with a ctx that carries the transaction, then
// commits. When the record existed already, fn does not run, nothing changes, and Handle
// returns duplicate=true with a nil error: acknowledge the message to the broker.
//
// When fn returns an error the transaction aborts and Handle returns that error unchanged; when
// fn panics it aborts and the panic is re-raised. Either way nothing is recorded, so a
// redelivery is processed. fn must pass its ctx to every operation, must not end the
// transaction, and may run more than once (see the package documentation).
func (in *Inbox) Handle(ctx context.Context, consumer string, msg *outbox.Message, fn func(ctx context.Context) error) (duplicate bool, err error) {
	if err := checkArgs("handle", consumer, msg, fn == nil); err != nil {
		return false, err
	}
	if err := in.checkTransactions(ctx); err != nil {
		return false, fmt.Errorf("%s: handle: %w", component, err)
	}
	sess, err := in.client.StartSession()
	if err != nil {
		return false, fmt.Errorf("%s: handle: start session: %w", component, err)
	}
	defer sess.EndSession(context.WithoutCancel(ctx))

	key := bson.D{{Key: fConsumer, Value: consumer}, {Key: fMessage, Value: msg.ID}}
	var fnErr error
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (_ any, err error) {
		fnErr = nil
		// An upsert whose pipeline keeps an existing processed_at: a new record is upserted
		// with the server's clock, an existing one matches and stays as it was.
		res, err := in.coll.UpdateOne(ctx, bson.D{{Key: fID, Value: key}},
			mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: fProcessedAt, Value: bson.D{{Key: "$ifNull", Value: bson.A{"$" + fProcessedAt, "$$NOW"}}}}}}}},
			options.UpdateOne().SetUpsert(true))
		if err != nil {
			return nil, err
		}
		if res.UpsertedCount == 0 {
			return nil, errDuplicate
		}
		defer func() {
			if r := recover(); r != nil {
				err = &handlerPanic{r}
			}
		}()
		if err := fn(ctx); err != nil {
			fnErr = err
			return nil, err
		}
		return nil, nil
	})
	var p *handlerPanic
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &p):
		panic(p.value)
	case fnErr != nil && errors.Is(err, fnErr):
		return false, fnErr
	case errors.Is(err, errDuplicate), mongo.IsDuplicateKeyError(err):
		// A duplicate key here is the record's: two upserts of one _id that raced.
		return true, nil
	}
	return false, fmt.Errorf("%s: handle %s: %w", component, msg.ID, err)
}

// Processed reports whether consumer has processed the message with this id.
func (in *Inbox) Processed(ctx context.Context, consumer, id string) (bool, error) {
	key := bson.D{{Key: fConsumer, Value: consumer}, {Key: fMessage, Value: id}}
	n, err := in.coll.CountDocuments(ctx, bson.D{{Key: fID, Value: key}})
	if err != nil {
		return false, fmt.Errorf("%s: processed: %w", component, err)
	}
	return n > 0, nil
}

// checkTransactions asks the server once whether it runs transactions, as the outbox store
// does: its hello must name a replica set (or a mongos) and a read-only transaction must
// commit. The verdict is remembered; a network error is not.
func (in *Inbox) checkTransactions(ctx context.Context) error {
	in.txMu.Lock()
	defer in.txMu.Unlock()
	if in.txOK {
		return nil
	}
	if in.txCheck != nil {
		return in.txCheck
	}
	err := in.probe(mongo.NewSessionContext(ctx, nil))
	var unsupported *unsupportedError
	switch {
	case err == nil:
		in.txOK = true
	case errors.As(err, &unsupported):
		in.txCheck = err
	}
	return err
}

type unsupportedError struct{ reason string }

func (e *unsupportedError) Error() string        { return unsupportedText + ": " + e.reason }
func (e *unsupportedError) Is(target error) bool { return target == ErrTransactionsUnsupported }

func (in *Inbox) probe(ctx context.Context) error {
	refused, err := outboxmongo.ProbeTransactions(ctx, in.client, in.coll)
	switch {
	case err != nil:
		return fmt.Errorf("check transactions: %w", err)
	case refused != "":
		return &unsupportedError{reason: refused}
	}
	return nil
}
