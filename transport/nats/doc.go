// Package nats is the NATS JetStream transport of the outbox: the relay hands it claimed
// messages and it publishes them to JetStream, waiting for the PubAck of every one, so the
// relay acknowledges only what a stream stored.
//
//	t, err := nats.New(ctx, nats.Config{
//		Connection: nats.Connection{URL: "nats://10.0.0.1:4222"},
//		Subject:    "events.{type}", // USER_CREATED -> events.USER_CREATED
//	})
//	...
//	relay, err := outbox.NewRelay(store, t, outbox.Config{})
//
// The transport publishes; it creates no stream. Create one whose subjects capture every
// subject the transport publishes to (for the default template, "outbox.>").
//
// # Deduplication and the duplicate window
//
// Every message carries Nats-Msg-Id = its ID. A stream drops a message whose ID it already
// stored within its duplicate window (StreamConfig.Duplicates, 2 minutes by default) and
// answers with a PubAck marked Duplicate, which the transport counts (Stats.Duplicates), logs
// at debug level, and reports as a success.
//
// The relay publishes a message again when it cannot know the first publish succeeded: the
// PubAck timed out or the connection dropped before it came, the relay died, or a lease
// expired. The copy is dropped only if it arrives within the window, so the window must
// exceed the relay's retry horizon: the longest time from a publish whose PubAck was lost to
// its republish. A lost PubAck is an outage (Unavailable), which charges no attempt: the relay
// republishes after its first backoff step, or, when the whole server was gone, once it
// answers again, so an outage longer than the window can end in copies. A relay that dies is
// replaced after its Lease (30s by default). A message that failed for an ordinary reason and
// was stored anyway waits PublishTimeout plus its backoff delay, which grows to Backoff.Max
// (5 minutes by default). The 2-minute default window covers short outages and a lost relay;
// for every duplicate to be dropped, set Duplicates above the longest outage you plan for and
// above Backoff.Max + Lease (10 minutes with the relay's defaults). Beyond the window,
// consumers still deduplicate by ID (or use the inbox). With Stream set, CheckStream verifies
// at start that the stream's window covers a given horizon.
//
// # What a consumer receives
//
// The body is the envelope of the package this project grew from, unless RawPayload is set:
//
//	{"id":"0192…","eventType":"USER_CREATED","payload":{…},"result":{…},"timestamp":"2026-01-02T03:04:05.678Z"}
//
// Headers: every header of the message, under its own name, with its exact case (trace
// context included, so a consumer continues the trace); outbox.type (the Type, always);
// outbox.key (the Key, when set); outbox.id (the ID, with RawPayload only); and JetStream's
// Nats-Msg-Id (the ID, always) and Nats-Expected-Stream (when Stream is set). NATS cannot carry
// every string: a header whose name has spaces, colons or control characters, whose value has
// a line break or whitespace at either end (nats.go would alter it), or whose name starts
// with Nats- (JetStream's instructions) fails its message permanently instead of being
// changed or dropped.
//
// # Errors
//
// Permanent, so the relay dead-letters the message at once: a message larger than the
// server's max_payload (or MaxMessageBytes) or the stream's max_msg_size, a subject that is not
// valid (a Type with spaces or wildcards under the template, a bad Route result), a header NATS
// cannot carry, a payload or result that is not JSON.
//
// Unavailable, so the relay pauses and charges no attempt: not connected (reconnecting or
// closed), no responders (no stream captures the subject, or JetStream is off), a PubAck that
// timed out or was lost to a disconnect, JetStream disabled, short of resources or without
// quorum, credentials or permissions refused, and a subject captured by another stream than
// Stream. A missing stream is counted as an outage of the destination rather than a fault of
// the messages: creating the stream fixes it without touching them, and dead-lettering the
// outbox because a deployment step came late would lose more than it saves. A relay whose
// routes point at a subject no stream will ever capture therefore pauses and logs instead of
// dead-lettering; the fix is the stream or the route.
//
// Anything else (a stream limit with discard-new, for instance) is an ordinary failed attempt.
// The transport never retries: nats.go's own retry on no responders is switched off.
//
// # Order within one Publish
//
// Messages are pipelined on one connection, so a stream stores them in the order of the
// slice; but when one fails (a per-message limit, say), later messages of its Key may still be
// stored after it, and a republish of the failed one then lands behind them. The transport
// therefore does not report outbox.KeyOrderer by default, and a relay in Ordered mode hands it
// one message per Key per call, which keeps the order.
//
// With KeepKeyOrder the transport keeps the order itself: a Key's messages are sent one after
// the other, each once the previous one's PubAck came, and after a Key's first failure (refused
// by the stream, or not even sendable) its later messages in the call are not sent, each
// reported failed and marked Unavailable: a message that was never sent is not charged an
// attempt. Keys proceed concurrently; messages without a Key, and a Key's only message in the
// call, stay pipelined. KeepsKeyOrder then reports true (outbox.KeyOrderer), so a relay in Ordered
// mode sends a Key's consecutive messages in one call: one round trip per message of a Key
// instead of one claim, publish and ack cycle per message.
//
// # Closing
//
// Close ends the waits of publishes in flight (their messages fail: the stream may still store
// them) and closes the connection New made; a Conn of yours stays open.
//
// # Connection
//
// New connects (or takes your Conn) and the connection reconnects forever. While it is not
// connected, Publish fails at once with an Unavailable error instead of buffering, and PubAcks
// outstanding at the disconnect fail the same way: the stream may have stored those messages,
// and the duplicate window drops their republish.
package nats
