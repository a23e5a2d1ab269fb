package mysql

import (
	"context"
	"database/sql"
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

// SchemaSQL returns the DDL that creates the outbox table, the key-lock table and the key-lock
// trigger, for migration tools. It is what EnsureSchema runs, and it is idempotent. The trigger
// statement is CREATE TRIGGER IF NOT EXISTS, which MariaDB has since 10.1.4 and MySQL since
// 8.0.29; on an older MySQL 8.0 drop the IF NOT EXISTS (EnsureSchema checks first instead).
func SchemaSQL(table string) (string, error) {
	if err := backend.CheckIdentifier("mysql", "Table", table); err != nil {
		return "", err
	}
	return schemaSQL(quote(table), quote(table+"_keys")) + ";\n" + triggerSQL(quote(table), quote(table+"_keys"), quote(table+triggerSuffix), true), nil
}

// triggerSuffix names the key-lock trigger: <table>_key_lock.
const triggerSuffix = "_key_lock"

// triggerBody is the key-lock trigger's statement. Add (write.go) relies on it to lock a
// message's key row before the row's seq is allocated: in a BEFORE INSERT trigger the
// AUTO_INCREMENT column is still 0 (MySQL manual, "Trigger Syntax and Examples"; seen here on
// MariaDB 10.11 too), because the server runs a row's BEFORE triggers
// (fill_record_n_invoke_before_triggers) and only then writes it (write_record, whose
// handler::update_auto_increment allocates the value), row by row, in every
// innodb_autoinc_lock_mode. For a multi-row INSERT, update_auto_increment reserves the values of
// all the rows at the first row's write (many_values.elements, the fix of MySQL bug 61579 for
// triggers in lock mode 1): so every seq of the statement is allocated after the first row's
// trigger, but the second row's may be allocated before the second row's trigger. Add therefore
// leaves the lock to the trigger only when the first row carries the statement's only key.
// It is one statement (no BEGIN ... END, no semicolon), so migration tools that split on
// semicolons keep it whole. It hashes the key's bytes as Add's keyLocks does, and LENGTH (in
// bytes) skips only the empty key, as Go's != "" does (a comparison with ” would pad, and
// skip a key of spaces).
func triggerBody(keys string) string {
	return "INSERT INTO " + keys + " (lock_key, msg_key) SELECT UNHEX(SHA2(NEW.msg_key, 256)), NEW.msg_key FROM DUAL" +
		" WHERE LENGTH(NEW.msg_key) > 0 ON DUPLICATE KEY UPDATE lock_key = lock_key"
}

// triggerSQL creates trigger trg on t: for each row inserted, with a key, it takes that key's
// row of the key-lock table, until the transaction ends.
func triggerSQL(t, keys, trg string, ifNotExists bool) string {
	ine := ""
	if ifNotExists {
		ine = "IF NOT EXISTS "
	}
	return "CREATE TRIGGER " + ine + trg + " BEFORE INSERT ON " + t + " FOR EACH ROW " + triggerBody(keys)
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
	// Close hands the connection back to the pool; it fails only on a connection already closed.
	defer func() { _ = conn.Close() }()
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
	// The key-lock trigger, on every run (a table made before it existed gains it). Checked
	// first rather than CREATE TRIGGER IF NOT EXISTS, which MySQL has only since 8.0.29; the
	// schema lock keeps two replicas from both creating it.
	body, found, err := s.trigger(ctx)
	if err != nil {
		return fmt.Errorf("mysql: ensure schema %s: %w", s.table, err)
	}
	if !found {
		if _, err := conn.ExecContext(ctx, triggerSQL(s.table, s.keys, s.triggerName(), false)); err != nil {
			return fmt.Errorf("mysql: ensure schema %s: create trigger %s: %w (CREATE TRIGGER needs the TRIGGER privilege on the table, "+
				"and with binary logging on, SUPER or log_bin_trust_function_creators = 1; or have an administrator run the statement SchemaSQL prints)",
				s.table, s.triggerName(), err)
		}
	}
	_ = body // a trigger of that name with another statement: CheckSchema names it
	return s.CheckSchema(ctx)
}

// triggerName is the key-lock trigger's name, quoted.
func (s *Store) triggerName() string { return quote(s.cfg.Table + triggerSuffix) }

// trigger reads the key-lock trigger's statement: found is false when the table has none.
func (s *Store) trigger(ctx context.Context) (body string, found bool, err error) {
	err = s.db.QueryRowContext(ctx, `SELECT action_statement FROM information_schema.triggers
WHERE trigger_schema = DATABASE() AND trigger_name = ? AND event_object_table = ?
AND action_timing = 'BEFORE' AND event_manipulation = 'INSERT'`, s.cfg.Table+triggerSuffix, s.cfg.Table).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return body, err == nil, err
}

// sameBody reports whether two trigger statements are the same but for spacing and case.
func sameBody(a, b string) bool {
	return strings.EqualFold(strings.Join(strings.Fields(a), " "), strings.Join(strings.Fields(b), " "))
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
	if err := s.checkTrigger(ctx); err != nil {
		return err
	}
	return s.checkVersion(ctx)
}

// checkTrigger verifies the key-lock trigger: without it, a one-key Add takes no key lock, and
// two writers of a key can commit out of seq order.
func (s *Store) checkTrigger(ctx context.Context) error {
	body, found, err := s.trigger(ctx)
	if err != nil {
		return fmt.Errorf("mysql: check schema %s: %w", s.table, err)
	}
	create := triggerSQL(s.table, s.keys, s.triggerName(), false)
	switch {
	case !found:
		return &outbox.SchemaError{Store: "mysql", Table: s.table, Problem: "has no BEFORE INSERT trigger " + s.triggerName() +
			" (without it writers of one key can commit out of seq order; EnsureSchema creates it, or " + create + ")"}
	case !sameBody(body, triggerBody(s.keys)):
		return &outbox.SchemaError{Store: "mysql", Table: s.table, Problem: "has a trigger " + s.triggerName() + " that is not the key lock (" + body +
			"); DROP TRIGGER " + s.triggerName() + " and " + create + " while no writer runs"}
	}
	return nil
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
