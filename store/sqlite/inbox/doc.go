// Package inbox is the consumer side of the outbox on SQLite: it turns the at-least-once
// delivery of a broker into an exactly-once effect on the consumer's database.
//
// Handle runs the consumer's handler in a transaction of the consumer's own *sql.DB and, in
// that same transaction, records (consumer, message ID) in the inbox table. A message already
// recorded for that consumer is not processed again: Handle reports it as a duplicate, which is
// a result and not an error, and the caller acknowledges it to the broker. A handler that fails
// or panics rolls back with its record, so the broker's redelivery is processed normally.
//
//	db, err := sql.Open("sqlite", sqlite.DSN("app.db", 5*time.Second))
//	in, err := inbox.New(db, inbox.Config{})
//	err = in.EnsureSchema(ctx)
//	dup, err := in.Handle(ctx, "billing", msg, func(ctx context.Context, tx *sql.Tx) error {
//		_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, id)
//		return err
//	})
//
// # Concurrent deliveries
//
// SQLite runs one writer at a time, and the record is the transaction's first statement, so the
// transaction holds the write lock from its start (with sqlite.DSN's BEGIN IMMEDIATE, or at the
// first INSERT otherwise). A second delivery of the same message waits for that lock, bounded
// by the busy timeout, then finds the record when the first committed (and reports a duplicate
// without running its handler) or inserts it when the first rolled back.
//
// # Chaining
//
// The handler's *sql.Tx may also write outbox events with sqlite.Store.Add(ctx, tx, ...) when
// the store is over the same database file: state change, events and record commit together.
//
// # Retention
//
// processed_at is milliseconds since the Unix epoch by SQLite's clock (the clock of the host
// running it). DeleteOlderThan deletes in bounded batches; Prune loops over them. The window must
// outlast every redelivery of a message; DefaultRetention covers SQS's longest retention period
// with a day to spare. A message redelivered after its record was pruned is processed again.
//
// # Schema
//
// EnsureSchema creates the table; SchemaSQL returns the same DDL for migration tools.
package inbox
