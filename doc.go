// Package outbox is a transactional outbox for Go services: a service writes its business change
// and the events that describe it in one database transaction, and a relay publishes those events
// to a message broker afterwards, at least once and in order per key, across crashes, broker
// outages and bad data. Nothing from a rolled-back transaction is ever published.
//
// This package is what an application calls: NewMessage to make an event, NewRelay to move the
// events of a Store to a Transport, Config to tune the relay, Middleware around publishing, and
// the errors and classifiers (Permanent, Unavailable, *BatchError) that say what went wrong.
// Backends live in packages and modules of their own; this module depends on nothing heavier
// than zap and a UUID generator, and the root package imports no backend.
//
// # Who it is for
//
// Service authors use this package and one store and one transport. Authors of a new store,
// transport or middleware also read package backend (the shared policy every backend applies)
// and package outboxtest (the conformance suites), and docs/extending.md.
//
// # A tour
//
// A service writes events with its store's write side, in its own transaction (each store offers
// Add with its driver's transaction type, and Execute, which opens the transaction, runs a
// function and stores the events with its result):
//
//	m, err := outbox.NewMessage("USER_CREATED", user) // Key orders events per user
//	m.Key = user.ID
//	err = store.Add(ctx, tx, m)                        // tx: the business change's pgx.Tx
//
// A relay, in the same process or another, claims due messages in leased batches, publishes them
// through the middleware chain and acknowledges them:
//
//	relay, err := outbox.NewRelay(store, transport, outbox.Config{})
//	err = relay.Run(ctx) // or Start and Stop in a lifecycle
//
// A failed publish is retried with backoff (Config.Backoff) until Config.MaxAttempts, then the
// message is dead-lettered with its reason; an error marked Permanent dead-letters at once; an
// error marked Unavailable pauses the relay without charging attempts until the broker is back.
// Consumers receive a JSON envelope ({"id","eventType","payload","result","timestamp"}) and
// deduplicate by ID, for instance with a store's inbox.
//
// # Reading order
//
// Read message.go first (what is stored and relayed, and its limits), then store.go and
// transport.go (the two contracts and the optional capabilities: Notifier, Inspector, Retention,
// KeyOrderer), errors.go (how failures are classified), config.go and defaults.go (every knob
// and its default), and relay.go with deliver.go (the engine: claim, publish, ack or nack) and
// outage.go (pausing and probing during a broker outage). secret.go holds Secret, the type
// config fields use for passwords and tokens.
// To write a store, transport, middleware or consumer adapter, read docs/extending.md next.
//
// # The repository
//
// Stores (the relay side of a database, plus a write side in the driver's own transaction type):
//   - store/postgres: PostgreSQL with pgx, a table claimed with FOR UPDATE SKIP LOCKED and
//     LISTEN/NOTIFY wake-ups; also a WAL mode that writes logical decoding messages and streams
//     them from a replication slot (docs/wal.md).
//   - store/mongo: MongoDB, with change-stream wake-ups where the server has them.
//   - store/sqlite: SQLite (pure Go), the embedded default.
//   - store/memory: in process, the reference store and a test double (in this module).
//   - store/mysql: MySQL and MariaDB, coming.
//
// Each store except memory has an inbox (store/*/inbox): consumer-side deduplication in the
// consumer's own transaction (docs/inbox.md).
//
// Transports (Publish to a broker, and a consumer reading it back):
//   - transport/sqs: AWS SQS, standard and FIFO queues.
//   - transport/kafka: Kafka with franz-go.
//   - transport/nats: NATS JetStream.
//   - transport/rabbitmq: RabbitMQ with publisher confirms.
//   - transport/memory: in process, the reference transport and a test double (in this module).
//
// Around them:
//   - middleware: retry, dedup, tracing (OpenTelemetry), logging (zap) and metrics, one package
//     each; the first middleware of Config.Middleware is the outermost.
//   - outboxfx: the relay and consumers in a go.uber.org/fx application's lifecycle.
//   - consume: the one consumer runtime (lifecycle, concurrency, ack after the handler, backoff,
//     dead-lettering, stats) that each broker's consumer is being moved onto, with a small
//     adapter per broker.
//   - backend: what store and transport authors need (stored-message validation, the claim
//     sieve, storable error text, the envelope codec, redaction). Applications do not.
//   - envconfig: the environment-variable and flag vocabulary of the relay's settings, used by
//     outboxfx and the command. Applications do not need it.
//   - outboxtest: the conformance suites every store and transport runs, and a fault kit.
//   - cmd/outbox: the command: relay, migrate, status, dead, bench.
//
// Each line above with a driver dependency is its own Go module, so a service links only the
// backends it uses; go.work at the repository root builds them together.
package outbox
