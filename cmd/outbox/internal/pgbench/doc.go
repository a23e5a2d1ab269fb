// Package pgbench measures the PostgreSQL outbox against raw SQL doing the same work on the same
// server in the same run, so results read as ratios that hold across machines. Each scenario
// takes a pool and options and returns a result with JSON tags; `go test -bench` here (in
// cmd/outbox/internal/pgbench) and the outbox CLI's bench command both call them.
//
// Scenarios:
//   - WriteOverhead: a one-row business transaction with and without Add of one event.
//   - Drain: a backlog drained through outbox.Relay to the memory transport, against a raw
//     DELETE ... FOR UPDATE SKIP LOCKED RETURNING loop and a held-transaction relay loop.
//   - Latency: end-to-end latency at a steady write rate, woken by NOTIFY and by polling only.
//
// Every scenario works in its own schema (random name unless given) and drops it afterwards.
package pgbench
