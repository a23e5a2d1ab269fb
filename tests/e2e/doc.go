// Package e2e runs the whole outbox against real services: business transactions writing events
// into PostgreSQL, the relay claiming them, and the SQS transport publishing them to an SQS
// server (fauxqs in tests), where a consumer checks that every committed event arrives exactly
// once and no rolled-back one arrives at all.
//
// The tests need PostgreSQL (OUTBOX_TEST_POSTGRES_URL, default
// postgres://root@127.0.0.1:5432/test) and an SQS server (OUTBOX_TEST_SQS_ENDPOINT, default
// http://127.0.0.1:4566; scripts/services/fauxqs start). Without them they skip, or fail in CI.
package e2e
