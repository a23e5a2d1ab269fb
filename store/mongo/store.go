package mongo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/txoutbox/outbox"
)

// Store is the MongoDB outbox. It is safe for concurrent use, and several Stores (in several
// processes) may share one collection: that is how relays share work.
type Store struct {
	cfg    Config
	client *mongo.Client
	owned  bool // the Store connected client and disconnects it on Close
	coll   *mongo.Collection
	seqs   *mongo.Collection // per-key sequence counters
	closed atomic.Bool

	txMu    sync.Mutex
	txCheck error // nil until a check succeeded; see checkTransactions
	txOK    bool

	keysMu sync.Mutex
	keys   map[string]struct{} // keys whose counter document exists

	clock serverClock
}

// Interfaces the Store implements.
var (
	_ outbox.Store     = (*Store)(nil)
	_ outbox.Notifier  = (*Store)(nil)
	_ outbox.Inspector = (*Store)(nil)
	_ outbox.Retention = (*Store)(nil)
)

// New validates cfg and returns a Store on cfg.Client, or on a client it connects to cfg.URI
// (checked with a ping within cfg.ConnectTimeout). It creates nothing: call EnsureSchema once.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Store{cfg: cfg, client: cfg.Client, keys: map[string]struct{}{}}
	if s.client == nil {
		client, err := mongo.Connect(options.Client().ApplyURI(cfg.URI.Reveal()).SetConnectTimeout(cfg.ConnectTimeout))
		if err != nil {
			return nil, fmt.Errorf("mongo: connect: %w", redactError(err, cfg.URI))
		}
		pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
		err = client.Ping(pingCtx, readpref.Primary())
		cancel()
		if err != nil {
			_ = client.Disconnect(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("mongo: connect %s: %w", cfg.URI, redactError(err, cfg.URI))
		}
		s.client, s.owned = client, true
	}
	// Always the primary, whatever the client's default: a claim reads back what its update
	// just leased, which a lagging secondary might not show yet.
	primary := options.Collection().SetReadPreference(readpref.Primary())
	db := s.client.Database(cfg.Database)
	s.coll = db.Collection(cfg.Collection, primary)
	s.seqs = db.Collection(cfg.Collection+"_seq", primary)
	return s, nil
}

// Close disconnects the client the Store connected, waiting up to ConnectTimeout for its
// operations to end (a caller's Client stays open). Later calls on the Store return
// outbox.ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) || !s.owned {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	if err := s.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("mongo: close: %w", redactError(err, s.cfg.URI))
	}
	return nil
}

// Client returns the client the Store uses, for the caller's own sessions and collections.
func (s *Store) Client() *mongo.Client { return s.client }

// Collection returns the outbox collection.
func (s *Store) Collection() *mongo.Collection { return s.coll }

// String names the store's collection and server without credentials.
func (s *Store) String() string {
	return fmt.Sprintf("mongo.Store{%s.%s}", s.cfg.Database, s.cfg.Collection)
}

func (s *Store) checkOpen(op string) error {
	if s.closed.Load() {
		return fmt.Errorf("mongo: %s: %w", op, outbox.ErrClosed)
	}
	return nil
}

// wrap prefixes a driver error with the package and operation, keeping secrets out of it.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("mongo: %s: %w", op, redactError(err, s.cfg.URI))
}
