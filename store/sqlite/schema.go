package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/txoutbox/outbox"
)

// SchemaSQL returns the DDL EnsureSchema runs for table, for users of migration tools
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
// one partial index serves both kinds of claim.
func SchemaSQL(table string) (string, error) {
	if err := checkTable(table); err != nil {
		return "", err
	}
	return schema(table), nil
}

func schema(table string) string {
	t := quote(table)
	name := func(suffix string) string { return quote(table + "_" + suffix) }
	// The head of a key is its oldest undelivered (pending, leased or dead) message; blocked is 1
	// on every other undelivered message of the key, and 0 on unkeyed ones. Triggers keep it so
	// whoever writes the table, so an ordered claim takes unblocked due messages in seq order and
	// never walks a long queue behind a busy key.
	undelivered := func(alias string) string {
		return alias + `.status <> 'delivered' AND ` + alias + `.key <> ''`
	}
	unblockHead := func(key string) string {
		return `UPDATE ` + t + ` SET blocked = 0 WHERE seq = (
		SELECT min(h.seq) FROM ` + t + ` AS h WHERE h.key = ` + key + ` AND ` + undelivered("h") + `);`
	}
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
	blocked      INTEGER NOT NULL DEFAULT 0,
	attempts     INTEGER NOT NULL DEFAULT 0,
	available_at INTEGER NOT NULL,
	lease_owner  TEXT,
	last_error   TEXT,
	delivered_at INTEGER,
	dead_at      INTEGER
) STRICT;
-- Claims: pending messages in seq order, heads and blocked ones apart, filtered on available_at
-- without touching the table.
CREATE INDEX IF NOT EXISTS ` + name("due") + ` ON ` + t + ` (blocked, seq, available_at) WHERE status = 'pending';
-- The undelivered messages of a key, oldest first: for the triggers. Unkeyed messages are left
-- out, so they cost no write here.
CREATE INDEX IF NOT EXISTS ` + name("key") + ` ON ` + t + ` (key, seq) WHERE status <> 'delivered' AND key <> '';
-- Inspector: dead letters, oldest first.
CREATE INDEX IF NOT EXISTS ` + name("dead") + ` ON ` + t + ` (seq) WHERE status = 'dead';
-- Retention: delivered messages by delivery time.
CREATE INDEX IF NOT EXISTS ` + name("delivered") + ` ON ` + t + ` (delivered_at) WHERE status = 'delivered';
-- A new keyed message queues behind any undelivered one of its key.
CREATE TRIGGER IF NOT EXISTS ` + name("queue") + ` AFTER INSERT ON ` + t + `
	WHEN NEW.key <> '' AND NEW.status <> 'delivered' AND NEW.blocked = 0 BEGIN
	UPDATE ` + t + ` SET blocked = 1 WHERE seq = NEW.seq AND EXISTS (
		SELECT 1 FROM ` + t + ` AS p WHERE p.key = NEW.key AND ` + undelivered("p") + ` AND p.seq < NEW.seq);
END;
-- A head that is delivered or deleted (acked, purged) hands over to the next of its key.
CREATE TRIGGER IF NOT EXISTS ` + name("deliver") + ` AFTER UPDATE OF status ON ` + t + `
	WHEN NEW.status = 'delivered' AND OLD.status <> 'delivered' AND OLD.key <> '' AND OLD.blocked = 0 BEGIN
	` + unblockHead("OLD.key") + `
END;
CREATE TRIGGER IF NOT EXISTS ` + name("remove") + ` AFTER DELETE ON ` + t + `
	WHEN OLD.status <> 'delivered' AND OLD.key <> '' AND OLD.blocked = 0 BEGIN
	` + unblockHead("OLD.key") + `
END;
`
}

// quote quotes a validated identifier. Validation already excludes quotes; quoting keeps
// keywords and case intact.
func quote(ident string) string { return `"` + ident + `"` }

// EnsureSchema creates the outbox table and its indexes when they are missing (the origin
// package's ensureOutboxTable), or upgrades a table of an earlier schema version, and records
// the version in <table>_schema. It refuses a table a newer binary upgraded
// (*SchemaVersionError) and another table of that name (*outbox.SchemaError). It is idempotent
// and safe to run from several processes at once: SQLite runs it in one write transaction at a
// time, so a failure leaves the table as it was.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("sqlite: ensure schema: %w", err)
	}
	tx, end, err := s.beginWrite(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: ensure schema: %w", err)
	}
	defer end()
	if err := s.migrate(ctx, tx); err != nil {
		var ve *SchemaVersionError
		if errors.As(err, &ve) || errors.Is(err, outbox.ErrSchema) {
			return err
		}
		return fmt.Errorf("sqlite: ensure schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: ensure schema: commit: %w", err)
	}
	return nil
}
