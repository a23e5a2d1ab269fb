// Package inbox holds the end-to-end test of the consumer side: writers commit events through
// the outbox, relays publish them to SQS with duplicates injected on purpose (acks lost after
// publishing, publishes that time out after the broker accepted them), consumers receive them
// with more duplicates (visibility timeouts that expire mid-handler, handlers that fail after
// their change, a consumer process killed with SIGKILL mid-transaction), and the inbox makes
// every committed event take effect exactly once, counted in the consumer's database, for
// PostgreSQL and SQLite.
package inbox
