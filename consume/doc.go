// Package consume is the one consumer runtime of the outbox: every transport's NewConsumer
// builds a *Consumer over a small Adapter that knows its broker and only its broker.
//
// The runtime owns what every broker consumer needs and none should write again: the lifecycle
// (Start, Stop within its deadline plus a short grace, Run), concurrency, decoding of the
// envelope (backend.DecodeEnvelope, or RawPayload), the handler call with recover, ack only
// after the handler returned nil, nack with backoff on error, extension of the delivery while
// its handler runs, rejection of undecodable and exhausted deliveries, ordered runs, Stats and
// logs. An adapter supplies four verbs per delivery (Ack, Nack with a delay, Reject, and
// optionally Extend) and three for itself (Open, Receive, Close).
//
// Read adapter.go first (the contract), then consumer.go (the runtime).
//
// # The adapter contract
//
// Open(ctx) is called by Start, before anything else: connect, resolve the queue, join
// the group. ctx bounds only that work. An error fails Start: Open releases what it opened
// itself (Close is not called), and Start may be called again.
//
// Receive(ctx, max) returns between 1 and max deliveries, blocking until at least one is there
// or ctx ends (then it returns ctx's error, or nil and no deliveries); ctx ends when Stop
// begins, and only then. The runtime reserved max
// handler slots before the call, so nothing it returns waits hidden in a buffer. Pollers
// (Config.Pollers) calls may run at once. A returned error is logged and counted, and Receive
// is called again after a backoff (100ms doubling to 5s): reconnecting after a broker restart
// is the adapter's job, inside Receive. Deliveries returned together with an error are handled.
//
// Every delivery Receive returned is settled exactly once, by exactly one of:
//   - Ack(ctx): the handler returned nil (or the adapter's inbox committed). Remove it.
//   - Nack(ctx, delay, cause): the handler failed, or the runtime gives it back unhandled (a
//     stop, an earlier failure of its run). Deliver it again, not before delay if the broker
//     can wait (SQS visibility, JetStream NakWithDelay); a broker that cannot (RabbitMQ requeue)
//     requeues at once; one that redelivers by itself (the memory transport's relay, Kafka's
//     rewind) does what its redelivery needs. cause is the handler's error or ErrStopped.
//   - Reject(ctx, cause): the body cannot be decoded, or Config.MaxDeliveries is exhausted.
//     Send it to the broker's dead-letter mechanism (RabbitMQ nack without requeue to the DLX,
//     JetStream Term) or, where the broker has only a redrive count (SQS), leave it to that;
//     each transport documents which.
//
// Settling runs under a context of its own (Config.SettleTimeout), not cancelled by Stop: the
// handler's work is done. An error from a settle is logged and counted; the broker then
// delivers the message again, which the inbox absorbs.
//
// Extend(ctx), when the Settler also implements Extender, is called every
// Config.ExtendInterval while the delivery's handler runs (SQS ChangeMessageVisibility,
// JetStream InProgress). It is never called after the delivery was settled.
//
// Close(ctx) is called once, by Stop, after every Receive
// returned and every delivery was settled, or, when Stop's deadline and grace passed with a
// handler still running, after the runtime gave that handler's delivery back with Nack: no
// method of the adapter or of a delivery is called after Close. Close must make sure the
// broker redelivers whatever it still holds (close the channel, leave the group).
//
// # Order
//
// Deliveries of one Receive call with the same non-empty Delivery.Group form a run, handled one
// after the other in the order given; runs of one group from later Receive calls wait for the
// earlier run to finish. The first delivery of a run that is not handled (its handler failed,
// it was malformed, the consumer stops) ends the run: the rest of it, and later runs of that
// group already received, are given back with Nack(ctx, 0, cause) in order, without being
// handled, so nothing overtakes the failed message when the broker redelivers it. When the run
// ended because the consumer stops, cause wraps ErrStopped for all of them. An adapter
// that keeps per-key order (SQS FIFO message groups, a Kafka partition, a NATS or RabbitMQ
// queue with KeepKeyOrder) sets Group; the others leave it empty and every delivery runs on
// its own, Concurrency at a time.
//
// # Offsets (Kafka)
//
// An adapter whose broker commits offsets rather than settling messages one by one sets Group
// to the partition, makes Ack record the offset for its next commit (and commit it on Close),
// makes Nack of a run's first failed delivery seek the partition back to it after delay (later
// Nacks of the run are no-ops, the seek covers them), and does not hand out more records of a
// partition until its previous run is settled. Reject of a malformed record commits past it.
package consume
