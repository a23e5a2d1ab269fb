package sqlite

import (
	"context"
	"fmt"
	"strings"
)

// Schema returns the DDL EnsureSchema runs for table, for users of migration tools
// (golang-migrate, goose, atlas). It is idempotent (IF NOT EXISTS throughout).
//
// Times are INTEGER Unix milliseconds. seq (the rowid) orders messages: SQLite has one writer at
// a time, so seq order is commit order and a claim that takes the lowest due seq never skips a
// row that committed late. A new row's seq is above every existing row's, which is all ordering
// needs; AUTOINCREMENT would also stop the reuse of a deleted maximum, which nothing relies on,
// at the price of a sqlite_sequence write in every transaction (about 10% of a write).
//
// A pending message's available_at is when it may next be claimed: its retry time, or the end
// of the lease it is under. One comparison thus covers "due" and "lease free or expired", and
// one partial index serves the claim.
func Schema(table string) (string, error) {
	if !identifierRE.MatchString(table) || strings.HasPrefix(strings.ToLower(table), "sqlite_") {
		return "", fmt.Errorf("sqlite: schema: table %q must match %s and not start with sqlite_", table, identifierRE)
	}
	return schema(table), nil
}

func schema(table string) string {
	t := quote(table)
	idx := func(suffix string) string { return quote(table + "_" + suffix) }
	return `CREATE TABLE IF NOT EXISTS ` + t + ` (
	seq          INTEGER PRIMARY KEY,
	id           TEXT    NOT NULL UNIQUE,
	type         TEXT    NOT NULL,
	key          TEXT    NOT NULL DEFAULT '',
	payload      TEXT    NOT NULL,
	result       TEXT,
	headers      TEXT,
	created_at   INTEGER NOT NULL,
	status       TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
	attempts     INTEGER NOT NULL DEFAULT 0,
	available_at INTEGER NOT NULL,
	lease_owner  TEXT,
	last_error   TEXT,
	delivered_at INTEGER,
	dead_at      INTEGER
) STRICT;
-- Claim: pending messages in seq order, filtered on available_at without touching the table.
CREATE INDEX IF NOT EXISTS ` + idx("due") + ` ON ` + t + ` (seq, available_at) WHERE status = 'pending';
-- Ordered claim: is there an earlier undelivered message with this key? Unkeyed messages are
-- left out, so they cost no write here.
CREATE INDEX IF NOT EXISTS ` + idx("key") + ` ON ` + t + ` (key, seq) WHERE status <> 'delivered' AND key <> '';
-- Inspector: dead letters, oldest first.
CREATE INDEX IF NOT EXISTS ` + idx("dead") + ` ON ` + t + ` (seq) WHERE status = 'dead';
-- Retention: delivered messages by delivery time.
CREATE INDEX IF NOT EXISTS ` + idx("delivered") + ` ON ` + t + ` (delivered_at) WHERE status = 'delivered';
`
}

// quote quotes a validated identifier. Validation already excludes quotes; quoting keeps
// keywords and case intact.
func quote(ident string) string { return `"` + ident + `"` }

// EnsureSchema creates the outbox table and its indexes when they are missing (the origin
// package's ensureOutboxTable). It is idempotent and safe to run from several processes at once:
// SQLite runs the DDL in one write transaction at a time.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("sqlite: ensure schema: %w", err)
	}
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: ensure schema: %w", err)
	}
	defer end()
	if _, err := tx.ExecContext(ctx, schema(s.cfg.Table)); err != nil {
		return fmt.Errorf("sqlite: ensure schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: ensure schema: commit: %w", err)
	}
	return nil
}
