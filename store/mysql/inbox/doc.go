// Package inbox is the consumer side of the outbox on MySQL and MariaDB: it turns the
// at-least-once delivery of a broker into an exactly-once effect on the consumer's database.
//
// Handle runs the consumer's handler in a transaction of the consumer's own *sql.DB and, in
// that same transaction, records (consumer, message ID) in the inbox table. A message already
// recorded for that consumer is not processed again: Handle reports it as a duplicate, which is
// a result and not an error, and the caller acknowledges it to the broker. A handler that fails
// or panics rolls back with its record, so the broker's redelivery is processed normally.
//
//	in, err := inbox.New(db, inbox.Config{})
//	err = in.EnsureSchema(ctx)
//	dup, err := in.Handle(ctx, "billing", msg, func(ctx context.Context, tx *sql.Tx) error {
//		_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, id)
//		return err
//	})
//
// # Concurrent deliveries
//
// The record is the transaction's first statement. InnoDB makes a second insert of the same
// primary key wait for the transaction holding the uncommitted one, so a concurrent delivery
// of the same message waits (bounded by innodb_lock_wait_timeout), then finds the record and
// reports a duplicate, or inserts it when the first rolled back.
//
// # Chaining
//
// The handler's *sql.Tx may also write outbox events with mysql.Store.Add(ctx, tx, ...) when
// the store is over the same database: state change, events and record commit together.
//
// # Retention
//
// processed_at is the server's UTC clock. DeleteOlderThan deletes in bounded batches; Prune
// loops over them. The window must outlast every redelivery of a message; DefaultRetention
// covers SQS's longest retention period with a day to spare.
//
// Tested on MariaDB 10.11 (outboxtest.RunInboxSuite); MySQL 8 runs the same SQL, untested here.
package inbox
