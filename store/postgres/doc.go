// Package postgres is the PostgreSQL backend of the outbox, built on pgx v5.
//
// The write side takes the caller's own transaction: Add(ctx, pgx.Tx, msgs...) stores messages
// in one statement inside the business transaction (AddSQL does the same for a *sql.Tx), and
// Execute runs a function and stores its events in a transaction it opens, the way the origin
// package's executeWithOutbox does. Every write also issues pg_notify inside the transaction, so
// a listening relay wakes when — and only when — the transaction commits.
//
// The relay side (Store, which implements outbox.Store, outbox.Notifier, outbox.Inspector and
// outbox.Retention) leases messages with one UPDATE over a SELECT ... FOR UPDATE SKIP LOCKED, so
// any number of relays share one table without a global lock, and a row that commits late is
// still found: claims follow partial indexes over pending rows, never an offset cursor.
//
// The table is created and upgraded by EnsureSchema (idempotent and safe when many replicas
// start at once; the layout's version is kept in <table>_schema), or from the DDL UpgradeSQL
// returns, for golang-migrate, goose or atlas users. Everything
// works through PgBouncer in transaction pooling mode with pgx's simple protocol, except that
// LISTEN needs a session: point Config.ListenURL at PostgreSQL itself in that setup.
//
// With Config.WAL set, the store runs in WAL mode instead: the same writes emit each message into
// the write-ahead log (pg_logical_emit_message) and the relay streams them from a logical
// replication slot in commit order, writing to the table only the messages whose publish failed.
// See WALConfig and docs/wal.md in the repository.
package postgres
