// Package core holds the contracts of the outbox: the Message that is written with a business
// change, the Store a relay claims messages from, the Transport it publishes them to, the
// Middleware around publishing, and the Relay engine that ties them together.
//
// Backends live in their own modules (store/postgres, store/mongo, store/sqlite, transport/sqs);
// this package depends on nothing heavier than zap and a UUID generator.
package outbox
