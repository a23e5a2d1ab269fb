package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/outbox"
)

// SchemaSQL returns the DDL that creates the outbox table and its indexes in schema, for
// migration tools (golang-migrate, goose, atlas): schema version 1's layout, idempotent (IF NOT
// EXISTS throughout). UpgradeSQL(schema, table, 0) is this and the version table EnsureSchema
// records the layout in; UpgradeSQL from a later version is what an upgrade adds.
//
// Columns: seq gives insert order (claims are oldest first, ordered mode follows it per key);
// status is pending, delivered or dead; available_at is when a pending message may next be
// claimed: its retry time after a failure, or its lease expiry while leased, so "due" is one
// comparison; lease_owner and lease_until record who holds the lease.
//
// Indexes are partial, so a claim reads only pending rows however many delivered rows are kept:
// pending by seq (claims), undelivered by key and seq (the ordered head check), delivered by
// delivered_at (retention), dead by seq (inspection). None covers available_at or the lease
// columns, so the claim's UPDATE can be a heap-only tuple (HOT) update, which writes no index
// entries. A claim updates every row of a page it reads, so fillfactor 50 leaves room on each page
// for all of them: measured here, that makes claims about three times cheaper than at 80, where
// most updates spill to other pages and insert into every index.
func SchemaSQL(schema, table string) (string, error) {
	if err := checkIdentifier("Schema", schema); err != nil {
		return "", err
	}
	if err := checkIdentifier("Table", table); err != nil {
		return "", err
	}
	return schemaSQL(schema, table, true), nil
}

func schemaSQL(schema, table string, createSchema bool) string {
	t := pgx.Identifier{schema, table}.Sanitize()
	idx := func(suffix string) string { return pgx.Identifier{indexName(table, suffix)}.Sanitize() }
	var b strings.Builder
	if createSchema {
		fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n", pgx.Identifier{schema}.Sanitize())
	}
	fmt.Fprintf(&b, `CREATE TABLE IF NOT EXISTS %[1]s (
	id           uuid        PRIMARY KEY,
	seq          bigint      GENERATED ALWAYS AS IDENTITY,
	type         text        NOT NULL,
	key          text        NOT NULL DEFAULT '',
	payload      json        NOT NULL,
	result       json,
	headers      json,
	status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
	attempts     integer     NOT NULL DEFAULT 0,
	available_at timestamptz NOT NULL DEFAULT now(),
	lease_owner  text,
	lease_until  timestamptz,
	last_error   text,
	created_at   timestamptz NOT NULL,
	delivered_at timestamptz,
	dead_at      timestamptz
) WITH (fillfactor = 50);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS %[3]s ON %[1]s (key, seq) WHERE status <> 'delivered';
CREATE INDEX IF NOT EXISTS %[4]s ON %[1]s (delivered_at) WHERE status = 'delivered';
CREATE INDEX IF NOT EXISTS %[5]s ON %[1]s (seq) WHERE status = 'dead';
`, t, idx("pending"), idx("undelivered_key"), idx("delivered"), idx("dead"))
	return b.String()
}

// indexName returns table_suffix, or, when that exceeds PostgreSQL's 63-byte limit (which would
// silently truncate it and make two index names collide), a shortened name with a hash.
func indexName(table, suffix string) string {
	name := table + "_" + suffix
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	tail := "_" + hex.EncodeToString(sum[:4]) + "_" + suffix
	return table[:63-len(tail)] + tail
}

// lockKey is the advisory lock EnsureSchema holds, one per table, so replicas starting together
// create the table once instead of failing on each other's half-made catalog entries.
func lockKey(schema, table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("outbox schema " + schema + "." + table))
	return int64(h.Sum64())
}

// EnsureSchema creates the schema, table and indexes when missing, or brings a table of an
// earlier layout to SchemaVersion (UpgradeSQL prints the same DDL), and records the version in
// the version table beside it; in WAL mode it creates the publication and replication slot too
// (WALSQL). A table made before versions were recorded is checked and recorded as version 1. A
// table at a newer version than this code knows is refused with a *SchemaVersionError. It is
// idempotent and safe to run from many processes at once: an advisory lock on the table
// serialises them.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("postgres: ensure schema: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		if errors.Is(err, outbox.ErrSchema) {
			return err // already says which table and why
		}
		return fmt.Errorf("postgres: ensure schema %s: %w", s.table, err)
	}
	if s.wal != nil {
		// Outside the transaction: a logical slot cannot be created in one that has written.
		if err := s.ensureWAL(ctx); err != nil {
			return fmt.Errorf("postgres: ensure schema %s: %w", s.table, err)
		}
	}
	return nil
}
