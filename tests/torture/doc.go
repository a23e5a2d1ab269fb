// Package torture proves the outbox's delivery promises under crashes, restarts, outages and
// concurrency. Relays run as separate processes (./relayproc) against the real PostgreSQL and a
// private fauxqs SQS server (or, in the broker-restart scenarios, a private NATS JetStream server
// or RabbitMQ node), while writer goroutines commit events in business transactions
// (some rolled back, some poison) and consumers drain the queues recording every delivery.
// Each scenario injects one kind of fault, then all at once, and a checker verifies every
// promise afterwards.
//
// The tests are behind the torture build tag, so the default `go test ./...` stays quick:
//
//	cd tests && go test -race -tags torture -run Torture -timeout 25m -v ./torture/
//
// They restart the PostgreSQL cluster (pg_ctlcluster), which disturbs anything else using it
// at that moment. The wal- scenarios run the store in its WAL mode (a replication slot per
// outbox, dropped at the end); the one of them that restarts PostgreSQL restarts a private
// server (initdb in a temporary directory). docs/reliability.md describes the scenarios and
// records their results.
package torture
