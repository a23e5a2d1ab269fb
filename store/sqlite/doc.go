// Package sqlite is the embedded outbox store, on modernc.org/sqlite (pure Go, no cgo): the
// zero-setup default for the quickstart, for tests and for single-node services.
//
// The write side takes the caller's *sql.Tx, so events commit or roll back with the business
// change:
//
//	user, err := sqlite.Execute(ctx, store, func(ctx context.Context, tx *sql.Tx) (User, error) {
//		return insertUser(ctx, tx, name)
//	}, &outbox.Message{Type: "USER_CREATED", Payload: payload})
//
// The relay side implements outbox.Store, outbox.Notifier, outbox.Inspector and outbox.Retention.
//
// # Concurrency
//
// SQLite has one write lock per database file, and its busy handler polls for it: under load a
// writer among many can starve past its busy timeout and fail with SQLITE_BUSY. So the store
// queues its writers before they reach SQLite. A store opened from Config.Path uses one
// connection by default (Config.MaxOpenConns), and every store over the same file in this
// process takes a shared write lock, first come first served and bounded by the caller's
// context, around each write transaction (Execute, Claim, Ack, Nack, Requeue...). Every
// transaction of the store's connections begins with BEGIN IMMEDIATE (the _txlock=immediate DSN
// option), so none starts as a reader that later fails to become the writer. Between processes
// sharing the file, the busy timeout (Config.BusyTimeout) makes writers wait their turn.
//
// # Notifications
//
// Connections the store opens carry SQLite commit hooks: a commit that inserted into the outbox
// table wakes the listeners of every store over the same file and table in this process. The
// hook runs inside the COMMIT, while the committing connection still holds the write lock, so a
// woken relay's claim (a write) waits for that lock and then sees the new rows. A store over
// the caller's own *sql.DB cannot hook its connections: Execute still signals after its commit,
// and callers of the bare Add call Store.Notify after they commit, or rely on polling.
package sqlite
