// Package inbox is the consumer side of the outbox on MongoDB: it turns the at-least-once
// delivery of a broker into an exactly-once effect on the consumer's database.
//
// Handle runs the consumer's handler in a multi-document transaction (session.WithTransaction)
// and, in that same transaction, records (consumer, message ID) as the _id of a document of the
// inbox collection. A message already recorded for that consumer is not processed again: Handle
// reports it as a duplicate, which is a result and not an error. A handler that fails or panics
// aborts the transaction with its record, so the broker's redelivery is processed normally.
//
//	in, err := inbox.New(client, inbox.Config{Database: "shop"})
//	err = in.EnsureSchema(ctx)
//	dup, err := in.Handle(ctx, "billing", msg, func(ctx context.Context) error {
//		_, err := accounts.UpdateOne(ctx, bson.D{{"_id", id}}, bson.D{{"$inc", bson.D{{"balance", -amount}}}})
//		return err // ctx carries the transaction: use it for every operation
//	})
//
// Transactions need a replica set or a sharded cluster (a single-node replica set is enough).
// On a standalone server, or one that accepts transactions without honouring them (FerretDB),
// Handle refuses with an error matching ErrTransactionsUnsupported before writing
// anything: a record written on its own could mark a message processed whose effect was lost.
//
// # Concurrent deliveries
//
// The record is written first. A second delivery of the same message conflicts with the first
// one's uncommitted record (a write conflict, which WithTransaction retries) until the first
// commits, and then finds the record and reports a duplicate without running its handler; or,
// when the first aborted, writes it and processes. As with any WithTransaction callback, fn may
// run more than once when the driver retries a transient error; each attempt's writes are
// undone before the next.
//
// # Chaining
//
// fn's ctx carries the transaction, so mongo.Store.Add(ctx, ...) there writes outbox events that
// commit with the state change and the record.
//
// # Retention
//
// processed_at is the server's clock ($$NOW) when the record was written. DeleteOlderThan
// deletes in bounded batches, comparing with $$NOW; Prune loops over them. The window must
// outlast every redelivery of a message; DefaultRetention covers SQS's longest retention
// period with a day to spare.
package inbox
