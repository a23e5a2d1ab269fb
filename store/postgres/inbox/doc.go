// Package inbox is the consumer side of the outbox on PostgreSQL: it turns the at-least-once
// delivery of a broker into an exactly-once effect on the consumer's database.
//
// Handle runs the consumer's handler in a transaction of the consumer's own database and, in
// that same transaction, records (consumer, message ID) in the inbox table. A message already
// recorded for that consumer is not processed again: Handle reports it as a duplicate, which is
// a result and not an error, and the caller acknowledges it to the broker as if it had just been
// processed. A handler that fails or panics rolls its transaction back with its record, so the
// redelivery the broker makes later is processed normally.
//
//	in, err := inbox.New(pool, inbox.Config{})
//	err = in.EnsureSchema(ctx)
//	dup, err := in.Handle(ctx, "billing", msg, func(ctx context.Context, tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - $1 WHERE id = $2", amount, id)
//		return err
//	})
//
// # Concurrent deliveries
//
// Two deliveries of one message may run at once (a visibility timeout that expired while the
// first was still working, two consumer processes). Handle inserts the record first, with
// INSERT ... ON CONFLICT DO NOTHING, before the handler runs. The primary key decides: the
// second insert waits on the first transaction's uncommitted row; when the first commits, the
// second inserts nothing, rolls back without running its handler and reports a duplicate; when
// the first rolls back, the second inserts and processes. This relies on READ COMMITTED, the
// PostgreSQL default; under REPEATABLE READ or SERIALIZABLE the waiting delivery fails with a
// serialization error instead (which the broker's redelivery then resolves as a duplicate).
//
// # Chaining
//
// The handler's transaction is an ordinary pgx.Tx, so it can also write outbox events with
// postgres.Store.Add(ctx, tx, ...): the state change, the events it emits and the inbox record
// commit together (a saga step: consume, change state, emit).
//
// # Retention
//
// Records older than the retention window are deleted in bounded batches by DeleteOlderThan
// (one batch) or Prune (batches until none is left), with the database's clock. The window must
// outlast every redelivery of a message: the queue's retention period (SQS: up to 14 days) and
// any republishing by the relay. A message redelivered after its record was pruned is processed
// again. DefaultRetention covers SQS's longest retention period with a day to spare.
//
// # Schema
//
// EnsureSchema creates the table; SchemaSQL returns the same DDL for migration tools.
package inbox
