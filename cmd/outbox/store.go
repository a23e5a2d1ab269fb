package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/store/mysql"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/sqlite"
)

// storeFlags are the flags every command that opens a store shares.
type storeFlags struct {
	url  string
	opts storeurl.Options
	f    *flags
}

func addStoreFlags(f *flags) *storeFlags {
	s := &storeFlags{f: f}
	addSettings(f, "", s, storeSettings())
	return s
}

// optionFlags names the store option flags by the config field a backend's validation error
// names, so that a bad --table is reported as --table, not as the URL.
var optionFlags = map[string]string{
	"Schema": "schema", "Table": "table", "Collection": "collection", "Database": "database",
	"PostgresMode": "postgres-mode", "WAL.Slot": "wal-slot", "WAL.Publication": "wal-publication",
	"WAL.ReplicationURL": "wal-replication-url", "WAL.LagAlarmBytes": "wal-lag-alarm",
	"WAL.MaxBufferedBytes": "wal-max-buffered-bytes",
}

// checkGiven refuses a store option given explicitly empty (--table ”): a value was meant,
// and the default would silently take its place.
func (s *storeFlags) checkGiven(cmd string) error {
	for _, name := range []string{"store", "schema", "table", "collection", "database", "postgres-mode", "wal-slot", "wal-publication", "wal-replication-url"} {
		if s.f.given[name] && s.f.fs.Lookup(name).Value.String() == "" {
			return usagef(cmd, "%s: is empty; leave it out for the default", s.f.describe(name))
		}
	}
	return nil
}

// target parses the store URL and options; a problem is a usage error naming the flag at fault.
func (s *storeFlags) target(cmd string) (storeurl.Target, error) {
	if err := s.checkGiven(cmd); err != nil {
		return storeurl.Target{}, err
	}
	t, err := storeurl.Parse(s.url, s.opts)
	if err != nil {
		return t, s.optionError(cmd, err)
	}
	return t, nil
}

// optionError reports a store error as a usage error of the option flag whose field it names,
// or else of --store.
func (s *storeFlags) optionError(cmd string, err error) error {
	var ce *outbox.ConfigError
	if errors.As(err, &ce) {
		if name, ok := optionFlags[ce.Field]; ok {
			return usagef(cmd, "%s: %s", s.f.describe(name), ce.Problem)
		}
	}
	return usagef(cmd, "%s: %s", s.f.describe("store"), s.scrub(err.Error()))
}

// scrub removes the secrets of the store URL and of the replication URL from text.
func (s *storeFlags) scrub(text string) string {
	return scrubURLs(text, s.url, s.opts.WAL.ReplicationURL)
}

// scrubURLs removes the secrets of the store URL raw and of a WAL-mode replication URL.
func scrubURLs(text, raw, replication string) string {
	text = storeurl.Scrub(text, raw)
	if replication != "" {
		text = backend.ScrubSecrets(text, postgres.ConnStringSecrets(replication))
	}
	return text
}

// walMode reports whether the store flags select PostgreSQL's WAL mode.
func (s *storeFlags) walMode() bool { return s.opts.PostgresMode == storeurl.ModeWAL }

// open parses the store flags and connects, within timeout: how every short-lived command
// (migrate, status, dead) begins. done closes the store and releases the timeout.
func (s *storeFlags) open(ctx context.Context, cmd string, timeout time.Duration) (_ context.Context, _ *openedStore, done func(), _ error) {
	target, err := s.target(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	store, err := openStore(ctx, target, s.url)
	if err != nil {
		cancel()
		return nil, nil, nil, failed(cmd, err)
	}
	return ctx, store, func() { _ = store.Close(); cancel() }, nil
}

// storeBackend is what the commands need of a store: every backend of this repository has it all.
type storeBackend interface {
	outbox.Store
	outbox.Inspector
	EnsureSchema(ctx context.Context) error
	Close() error
}

// openedStore is a connected store with a cheap liveness check for /healthz.
type openedStore struct {
	storeBackend
	// backend is the store itself, for the relay: the embedded interface hides what the relay
	// looks for beyond it (Notifier, Retention, SchemaChecker, ...).
	backend storeBackend
	ping    func(ctx context.Context) error
	name    string // redacted URL and table, for logs
	// wal is the PostgreSQL store in WAL mode, for its slot; nil in every other case.
	wal *postgres.Store
}

// openStore connects to the store t describes. Errors never carry the URL's password.
func openStore(ctx context.Context, t storeurl.Target, raw string) (*openedStore, error) {
	name := storeurl.Redact(raw) + " (" + t.Table() + ")"
	var (
		o   *openedStore
		err error
	)
	switch t.Kind {
	case storeurl.Postgres:
		var s *postgres.Store
		if s, err = postgres.New(ctx, t.Postgres); err == nil {
			o = &openedStore{storeBackend: s, ping: s.Pool().Ping}
			if t.Postgres.WAL != nil {
				o.wal = s
			}
		}
	case storeurl.Mongo:
		var s *mongo.Store
		if s, err = mongo.New(ctx, t.Mongo); err == nil {
			o = &openedStore{storeBackend: s, ping: func(ctx context.Context) error { return s.Client().Ping(ctx, nil) }}
		}
	case storeurl.SQLite:
		var s *sqlite.Store
		if s, err = sqlite.New(ctx, t.SQLite); err == nil {
			o = &openedStore{storeBackend: s, ping: s.DB().PingContext}
		}
	case storeurl.MySQL:
		var s *mysql.Store
		if s, err = mysql.New(ctx, t.MySQL); err == nil {
			o = &openedStore{storeBackend: s, ping: s.DB().PingContext}
		}
	default:
		err = fmt.Errorf("unknown store kind %q", t.Kind)
	}
	if err != nil {
		return nil, errors.New(scrubURLs(fmt.Sprintf("open store %s: %v", name, err), raw, replicationURL(t)))
	}
	o.name = name
	o.backend = o.storeBackend
	return o, nil
}

// checkSchema returns the store's error when its table is missing or foreign (it then names
// what to run), nil otherwise: a store that cannot be asked is left to the command's own call.
func (o *openedStore) checkSchema(ctx context.Context) error {
	sc, ok := o.backend.(outbox.SchemaChecker)
	if !ok {
		return nil
	}
	if err := sc.CheckSchema(ctx); errors.Is(err, outbox.ErrSchema) {
		return err
	}
	return nil
}

// replicationURL is the WAL mode's replication connection string, or "".
func replicationURL(t storeurl.Target) string {
	if t.Postgres.WAL == nil {
		return ""
	}
	return t.Postgres.WAL.ReplicationURL
}
