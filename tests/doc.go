// Package tests holds the end-to-end and torture tests that combine several backends (the real
// PostgreSQL store, the SQS transport, the relay as a separate process). It is its own module so
// that no library module depends on every backend.
package tests
