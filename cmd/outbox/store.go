package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/sqlite"
)

// storeFlags are the flags every command that opens a store shares.
type storeFlags struct {
	url  string
	opts storeurl.Options
}

func addStoreFlags(f *flags) *storeFlags {
	s := &storeFlags{}
	f.fs.StringVar(&s.url, "store", "", "store URL: postgres://USER[:PASS]@HOST/DB, mongodb://HOST/DB?replicaSet=RS or sqlite:PATH")
	f.env("store", "OUTBOX_STORE")
	f.fs.StringVar(&s.opts.Schema, "schema", "", `postgres schema of the outbox table (default "public")`)
	f.env("schema", "OUTBOX_SCHEMA")
	f.fs.StringVar(&s.opts.Table, "table", "", `outbox table, postgres and sqlite (default "outbox")`)
	f.env("table", "OUTBOX_TABLE")
	f.fs.StringVar(&s.opts.Collection, "collection", "", `outbox collection, mongodb (default "outbox")`)
	f.env("collection", "OUTBOX_COLLECTION")
	f.fs.StringVar(&s.opts.Database, "database", "", "mongodb database (default: the one in the URL's path)")
	f.env("database", "OUTBOX_DATABASE")
	return s
}

// target parses the store URL and options; a problem is a usage error.
func (s *storeFlags) target(cmd string) (storeurl.Target, error) {
	t, err := storeurl.Parse(s.url, s.opts)
	if err != nil {
		return t, usagef(cmd, "--store (OUTBOX_STORE): %s", storeurl.Scrub(err.Error(), s.url))
	}
	return t, nil
}

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

// backend is what the commands need of a store: every backend of this repository has it all.
type backend interface {
	core.Store
	core.Inspector
	EnsureSchema(ctx context.Context) error
	Close() error
}

// openedStore is a connected store with a cheap liveness check for /healthz.
type openedStore struct {
	backend
	ping func(ctx context.Context) error
	name string // redacted URL and table, for logs
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
			o = &openedStore{backend: s, ping: s.Pool().Ping}
		}
	case storeurl.Mongo:
		var s *mongo.Store
		if s, err = mongo.New(ctx, t.Mongo); err == nil {
			o = &openedStore{backend: s, ping: func(ctx context.Context) error { return s.Client().Ping(ctx, nil) }}
		}
	case storeurl.SQLite:
		var s *sqlite.Store
		if s, err = sqlite.New(ctx, t.SQLite); err == nil {
			o = &openedStore{backend: s, ping: s.DB().PingContext}
		}
	default:
		err = fmt.Errorf("unknown store kind %q", t.Kind)
	}
	if err != nil {
		return nil, errors.New(storeurl.Scrub(fmt.Sprintf("open store %s: %v", name, err), raw))
	}
	o.name = name
	return o, nil
}
