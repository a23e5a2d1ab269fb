// Package kafka is the Apache Kafka transport of the outbox, on franz-go: the relay hands it
// claimed messages and it produces them as records with an idempotent producer and acks from
// all in-sync replicas, returning only when the broker has answered for every record.
//
//	t, err := kafka.New(ctx, kafka.Config{
//		Connection: kafka.Connection{Brokers: []string{"127.0.0.1:9092"}},
//		Topic:      "events",
//		Routes:     map[string]string{"ORDER_PLACED": "orders"},
//	})
//	...
//	relay, err := outbox.NewRelay(store, t, outbox.Config{}) // ordered per key by default
//
// # What a consumer receives
//
// The record key is the message Key (no key when it is empty), so a key keeps its partition
// and, on it, its order; franz-go's default partitioner hashes keys as the Java client does.
// The value is the envelope of the package this project grew from, unless RawPayload is set:
//
//	{"id":"0192…","eventType":"USER_CREATED","payload":{…},"result":{…},"timestamp":"2026-01-02T03:04:05.678Z"}
//
// Record headers, in this order:
//   - every message header, sorted by name (traceparent and tracestate included, so a consumer
//     continues the trace); empty values are kept;
//   - outbox.type: the message Type, always;
//   - outbox.key: the message Key, when it is not empty;
//   - outbox.id: the message ID, only with RawPayload, whose value lacks it.
//
// The record timestamp is the time of producing, not the message's CreatedAt (which is in the
// envelope): a backlog published after an outage must not fall straight out of a topic's
// time-based retention.
//
// # Delivery
//
// Idempotent writes with acks=all: a batch the producer resends after a lost answer is written
// once. Publish returns when every record's result is known; a record counts as published only
// when the broker acknowledged it from all in-sync replicas. When ctx ends first, records
// without an answer are reported failed and may still be written: the relay publishes them
// again (promise 3's duplicates; consumers deduplicate by ID).
//
// # Per-key order within one Publish
//
// The transport implements outbox.KeyOrderer: the records of one Key reach their partition in
// the order of the slice, and after the first failed record of a Key no later record of that
// Key in the same call is published; each is reported failed (held back, retryably). It holds
// because of three things together:
//   - franz-go fails every record it holds for a partition when one batch of that partition
//     fails, never only the batch: the sequence numbers of the idempotent producer could not
//     skip it;
//   - records are sent only by the transport's flushes (manual flushing), and a flush starts
//     only once every record of the calls in it is buffered, with nobody buffering on that
//     client while it runs; the client's connections hold every write while records are being
//     buffered, so not even a send that franz-go started during the previous flush lets part
//     of them out early. A key's later records are therefore held when an earlier one fails.
//     Records that cannot be buffered together (a key's records bound for a second topic,
//     more than MaxMessageBytes or 10000 records) go in a later flush, only after every result
//     of the earlier one is known;
//   - a flush holds at most MaxMessageBytes, so each partition gets one batch per flush and no
//     later batch of a partition is on the wire while an earlier one can still fail, whatever
//     producer state the broker keeps.
//
// Concurrent Publish calls share a flush, and its batches and requests, as they would share a
// plain franz-go client; Concurrency flushes, each on a producer client of its own, are in
// flight at once. A failure of a shared batch fails the records of every call in it.
//
// A failure the transport finds before producing (a record above MaxMessageBytes, a bad route,
// a corrupt payload) holds back the key's later records without sending them. Two limits: a
// record reported failed because its outcome was unknown (ctx ended, or the producer gave up
// on an unanswered batch) may still be written: within its call never behind the call's later
// records, but possibly after a retry of it and what followed the retry, as a late duplicate
// that consumers drop by ID; and partitions added to a topic while a key's records are
// produced move the key to another partition, which breaks its order for consumers whatever
// the producer does.
//
// # Errors
//
// Permanent (dead-lettered at once): a record above MaxMessageBytes, a topic name Kafka refuses
// (in Config, from Route, or from the broker), a corrupt payload, a reserved header name, and a
// record the broker refuses as too large or invalid when it was alone in its batch. When the
// broker refuses a batch of several records, it does not say which one is at fault: they fail
// retryably. Outages (outbox.Unavailable, which pause the relay and charge no attempt): brokers
// unreachable, no leader, not enough in-sync replicas, request timeouts, throttling, a missing
// topic, refused credentials or permissions, and settings the broker refuses.
//
// # Routing
//
// Routes maps a message Type to its own topic; Route can decide per message; everything else
// goes to Topic.
package kafka
