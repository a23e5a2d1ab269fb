package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/fx"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/transport/sqs"
)

// The service owns its pool and its AWS client; outboxfx only consumes the store and transport
// built on them.

func newPool(lc fx.Lifecycle, cfg Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(context.Background(), cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: invalid OUTBOX_POSTGRES_URL")
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error { return pool.Ping(ctx) },
		OnStop:  func(context.Context) error { pool.Close(); return nil },
	})
	return pool, nil
}

// newStore builds the outbox store on the service's pool and, at start, creates the outbox
// table and the users table.
func newStore(lc fx.Lifecycle, pool *pgxpool.Pool, cfg Config) (*postgres.Store, error) {
	store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Schema: cfg.Schema})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := store.EnsureSchema(ctx); err != nil {
				return err
			}
			_, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+usersTable(cfg)+
				" (id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE)")
			return err
		},
		OnStop: func(context.Context) error { return store.Close() },
	})
	return store, nil
}

func usersTable(cfg Config) string { return pgx.Identifier{cfg.Schema, "users"}.Sanitize() }

// asCoreStore hands the store to outboxfx as the relay's outbox.Store.
func asCoreStore(s *postgres.Store) outbox.Store { return s }

// newTransport builds the SQS transport; tests swap it for transport/memory with fx.Decorate.
func newTransport(lc fx.Lifecycle, cfg Config) (outbox.Transport, error) {
	tr, err := sqs.New(context.Background(), sqs.Config{
		Connection: sqs.Connection{Region: cfg.Region, Endpoint: cfg.Endpoint, AccessKeyID: outbox.Secret(cfg.AccessKeyID), SecretAccessKey: outbox.Secret(cfg.SecretKey)},
		QueueURL:   cfg.QueueURL,
	})
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(tr.Close))
	return tr, nil
}
