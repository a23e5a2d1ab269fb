// Package mongo is the MongoDB outbox store, on the official driver (go.mongodb.org/mongo-driver/v2).
//
// # Writing
//
// Events are written in the caller's transaction, so they commit or roll back with the business
// change they describe. Execute runs a function in session.WithTransaction and stores the events
// with its result; Add stores events from inside a transaction the caller already runs (its ctx
// is the callback context of session.WithTransaction, or one made with mongo.NewSessionContext).
// MongoDB transactions need a replica set or a sharded cluster. On a standalone server, or a
// server that accepts the transaction fields but does not honour them (FerretDB), Add and Execute
// return ErrTransactionsUnsupported before anything is written: the store never falls back to
// writes that could commit without the business change, or the business change without them.
// Add outside a transaction returns ErrNoTransaction for the same reason.
//
// # Documents
//
// One document per message, _id = the message ID (a UUIDv7 string). Payload and result are kept
// as JSON text (strings), not converted to BSON: the relay publishes the bytes the writer wrote,
// JSON numbers keep their precision, top-level arrays and scalars are allowed, and a payload key
// such as "$date" is not mistaken for MongoDB Extended JSON. Headers are a list of {k, v} pairs,
// because header names may contain '.' or start with '$', which field names may not.
//
// # Order
//
// In ordered mode a Key's messages are published in seq order. seq comes from a per-key counter
// document (collection <Collection>_seq) incremented inside the writing transaction, so two
// transactions writing the same Key serialize on that counter (the second retries on a write
// conflict) and seq order is commit order, whatever the writers' clocks say. Messages without a
// Key take no counter and are ordered by _id (time).
//
// # Relaying
//
// Claim finds due candidates, then takes them with one conditional update whose filter repeats
// the due condition (status pending, available_at <= now), so of two relays racing for a message
// exactly one matches it. A claim moves available_at to the end of the lease: a crashed relay's
// messages are due again when their lease expires, and one index serves every claim. Ack and
// Nack only touch messages whose lease_owner is the caller. Times are the relay host's clock:
// hosts whose clocks differ by d may see a lease end d early.
//
// Listen watches inserts with a change stream; servers without change streams (standalone,
// FerretDB) make it return an error, and the relay polls.
package mongo
