package mysql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// claimIndex is the index the claim's ORDER BY follows: pending rows in seq order. Without it a
// SKIP LOCKED claim sorts, and locks, every row it scans, and concurrent claimers serialise.
const claimIndex = "outbox_claim"

// keyIndex is the ordered claim's: pending (and dead) rows by key, each key's in seq order, so
// the walk over keys is a loose index scan (one probe per key, never its backlog) and a key's
// run is a range read.
const keyIndex = "outbox_key"

// SchemaSQL returns the DDL that creates the outbox table, for migration tools. It is what
// EnsureSchema runs, and it is idempotent.
func SchemaSQL(table string) (string, error) {
	if err := backend.CheckIdentifier("mysql", "Table", table); err != nil {
		return "", err
	}
	return schemaSQL(quote(table), quote(table+"_keys")), nil
}

// keyColumn is the key-lock table's record of its row's key, which the prune reads.
const keyColumn = "msg_key VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ''"

// schemaSQL creates the outbox table t and the key-lock table keys: Add locks one row of keys
// per message key until commit, so writers of one key commit in seq order; the claim path
// prunes the rows of keys with no messages left (prune.go). outbox_key serves
// ordered claims: whether a row has an undelivered predecessor of its key, and a key's pending
// rows in seq order, are both range reads of it that never touch delivered rows.
func schemaSQL(t, keys string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[3]s (
	lock_key BINARY(32) NOT NULL PRIMARY KEY,
	%[5]s
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS %[1]s (
	seq          BIGINT       NOT NULL AUTO_INCREMENT,
	id           CHAR(36)     CHARACTER SET ascii NOT NULL,
	type         VARCHAR(255) NOT NULL,
	msg_key      VARCHAR(128) NOT NULL DEFAULT '',
	payload      LONGTEXT     NOT NULL,
	result       LONGTEXT     NULL,
	headers      TEXT         NULL,
	status       VARCHAR(9)   CHARACTER SET ascii NOT NULL DEFAULT 'pending',
	attempts     INT          NOT NULL DEFAULT 0,
	available_at DATETIME(6)  NOT NULL,
	lease_owner  VARCHAR(255) NULL,
	last_error   TEXT         NULL,
	created_at   DATETIME(6)  NOT NULL,
	delivered_at DATETIME(6)  NULL,
	dead_at      DATETIME(6)  NULL,
	PRIMARY KEY (seq),
	UNIQUE KEY outbox_id (id),
	KEY %[2]s (status, seq),
	KEY %[4]s (status, msg_key, seq),
	KEY outbox_delivered (status, delivered_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`, t, claimIndex, keys, keyIndex, keyColumn)
}

// EnsureSchema creates the table when missing, or upgrades a table of an earlier schema
// version, records the version in <table>_schema, and checks that the claim and key indexes are
// there with their columns in order. It refuses a table a newer binary upgraded
// (*SchemaVersionError) and another table of that name (*outbox.SchemaError). A named lock
// (GET_LOCK) serialises replicas starting together.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("mysql: ensure schema: %w", err)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("mysql: ensure schema: %w", err)
	}
	defer conn.Close()
	lock := "outbox schema " + s.cfg.Table
	var got int
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 30)", lock).Scan(&got); err != nil || got != 1 {
		return fmt.Errorf("mysql: ensure schema %s: cannot take the schema lock (%v)", s.table, err)
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", lock) }()
	if err := s.migrate(ctx, conn); err != nil {
		var ve *SchemaVersionError
		if errors.As(err, &ve) || errors.Is(err, outbox.ErrSchema) {
			return err
		}
		return fmt.Errorf("mysql: ensure schema %s: %w", s.table, err)
	}
	// A key table made before it recorded keys gains the column (an instant change); its old
	// rows keep an empty msg_key, which the prune takes for idle.
	have, err := s.columnsOf(ctx, s.cfg.Table+"_keys")
	if err != nil {
		return fmt.Errorf("mysql: ensure schema %s: %w", s.keys, err)
	}
	if have["lock_key"] && !have["msg_key"] {
		if _, err := conn.ExecContext(ctx, "ALTER TABLE "+s.keys+" ADD COLUMN "+keyColumn); err != nil {
			return fmt.Errorf("mysql: ensure schema %s: add msg_key: %w", s.keys, err)
		}
	}
	return s.CheckSchema(ctx)
}

// outboxColumns are the outbox table's columns; a table missing one of them is another table
// of the same name.
var outboxColumns = []string{"seq", "id", "type", "msg_key", "payload", "result", "headers", "status",
	"attempts", "available_at", "lease_owner", "last_error", "created_at", "delivered_at", "dead_at"}

// CheckSchema verifies that the table exists with the outbox's columns and the key-lock table
// with its own (an *outbox.SchemaError when not: errors.Is outbox.ErrSchema), that the table
// has the claim index on (status, seq) and the key index on (status, msg_key, seq), and that no
// newer binary upgraded it (*SchemaVersionError). The relay calls it at Start.
func (s *Store) CheckSchema(ctx context.Context) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("mysql: check schema: %w", err)
	}
	have, err := s.columnsOf(ctx, s.cfg.Table)
	if err != nil {
		return fmt.Errorf("mysql: check schema %s: %w", s.table, err)
	}
	if err := backend.CheckColumns("mysql", s.table, have, outboxColumns); err != nil {
		return err
	}
	keys, err := s.columnsOf(ctx, s.cfg.Table+"_keys")
	if err != nil {
		return fmt.Errorf("mysql: check schema %s: %w", s.keys, err)
	}
	switch {
	case !keys["lock_key"]:
		return &outbox.SchemaError{Store: "mysql", Table: s.keys, Problem: outbox.SchemaMissing}
	case !keys["msg_key"]:
		return &outbox.SchemaError{Store: "mysql", Table: s.keys,
			Problem: "has no column msg_key (made by an earlier shape of the store; EnsureSchema adds it, or ALTER TABLE " + s.keys + " ADD COLUMN " + keyColumn + ")"}
	}
	if err := s.checkIndex(ctx, claimIndex, []string{"status", "seq"}, "claims would sort and lock the backlog"); err != nil {
		return err
	}
	if err := s.checkIndex(ctx, keyIndex, []string{"status", "msg_key", "seq"}, "ordered claims would read every blocked row"); err != nil {
		return err
	}
	return s.checkVersion(ctx)
}

// checkIndex verifies that the table's index name has the columns want, in order. A table from
// before the key index led with status has outbox_key on (msg_key, status, seq): the error
// gives the statement that rebuilds it.
func (s *Store) checkIndex(ctx context.Context, name string, want []string, why string) error {
	rows, err := s.db.QueryContext(ctx, `SELECT column_name FROM information_schema.statistics
WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ? ORDER BY seq_in_index`, s.cfg.Table, name)
	if err != nil {
		return fmt.Errorf("mysql: check schema %s: %w", s.table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return fmt.Errorf("mysql: check schema %s: %w", s.table, err)
		}
		cols = append(cols, strings.ToLower(c))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("mysql: check schema %s: %w", s.table, err)
	}
	if slices.Equal(cols, want) {
		return nil
	}
	fix := "ALTER TABLE " + s.table + " ADD INDEX " + name + " (" + strings.Join(want, ", ") + ")"
	have := "missing"
	if len(cols) > 0 {
		have = "on (" + strings.Join(cols, ", ") + ")"
		fix = "ALTER TABLE " + s.table + " DROP INDEX " + name + ", ADD INDEX " + name + " (" + strings.Join(want, ", ") + ")"
	}
	return fmt.Errorf("mysql: check schema %s: index %s is %s, want (%s): %s; fix with %s",
		s.table, name, have, strings.Join(want, ", "), why, fix)
}

// columnsOf returns the names of table's columns; none when it does not exist.
func (s *Store) columnsOf(ctx context.Context, table string) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT column_name FROM information_schema.columns
WHERE table_schema = DATABASE() AND table_name = ?`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		have[c] = true
	}
	return have, rows.Err()
}
