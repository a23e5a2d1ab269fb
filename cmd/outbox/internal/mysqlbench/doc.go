// Package mysqlbench measures the MySQL/MariaDB outbox against raw SQL doing the same work on
// the same server in the same run, so results read as ratios that hold across machines. It
// mirrors pgbench: each scenario takes a connection URL and options and returns a result with
// JSON tags; the outbox CLI's bench command (mysql-write, mysql-drain, mysql-latency,
// mysql-ordered) and `go test -bench` here both call them.
//
// Scenarios:
//   - WriteOverhead: a one-row business transaction with and without Add of one event.
//   - Drain: a backlog drained through outbox.Relay to the memory transport, against a raw
//     loop of SELECT ... FOR UPDATE SKIP LOCKED + DELETE transactions with the same concurrency.
//   - Latency: end-to-end latency at a steady write rate, woken by the store's in-process
//     signal (writer and relay in one process) and by polling only (as writers in another
//     process are found: MySQL has no LISTEN/NOTIFY).
//   - Ordered: ordered against unordered draining of the same backlogs.
//
// Every scenario works in tables of its own (random name unless given) and drops them after.
package mysqlbench
