package inbox

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
)

// SchemaSQL returns the DDL that creates the inbox table in schema, for migration tools
// (golang-migrate, goose, atlas). It is what EnsureSchema runs, and idempotent.
//
// The primary key (consumer, message_id) is what makes a delivery take effect once: it decides
// between concurrent deliveries. message_id is text, not uuid, so IDs of producers other than
// this outbox fit too. processed_at is the committing transaction's start on the database's
// clock; retention reads it through its own index.
func SchemaSQL(schema, table string) (string, error) {
	if err := (Config{Schema: schema, Table: table}).Validate(); err != nil {
		return "", err
	}
	return schemaSQL(schema, table, true), nil
}

func schemaSQL(schema, table string, createSchema bool) string {
	t := pgx.Identifier{schema, table}.Sanitize()
	idx := pgx.Identifier{indexName(table, "processed_at")}.Sanitize()
	s := ""
	if createSchema {
		s = fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s;\n", pgx.Identifier{schema}.Sanitize())
	}
	return s + fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	consumer     text        NOT NULL,
	message_id   text        NOT NULL,
	processed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (processed_at);
`, t, idx)
}

// indexName returns table_suffix, shortened with a hash when it would pass PostgreSQL's 63-byte
// limit (which would truncate it silently and could make two names collide).
func indexName(table, suffix string) string {
	name := table + "_" + suffix
	if len(name) <= 63 {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	tail := fmt.Sprintf("_%08x_%s", h.Sum32(), suffix)
	return table[:63-len(tail)] + tail
}

// lockKey is the advisory lock EnsureSchema holds, so replicas starting together create the
// table once instead of failing on each other's half-made catalog entries.
func lockKey(schema, table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("outbox inbox schema " + schema + "." + table))
	return int64(h.Sum64())
}

// EnsureSchema creates the schema, the table and its index when missing. It is idempotent and
// safe to run from many processes at once.
func (in *Inbox) EnsureSchema(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, in.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(in.cfg.Schema, in.cfg.Table)); err != nil {
			return err
		}
		// CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the schema exists.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", in.cfg.Schema).Scan(&exists); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schemaSQL(in.cfg.Schema, in.cfg.Table, !exists))
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: ensure schema %s: %w", component, in.table, err)
	}
	return nil
}
