// Package rabbitmq is the RabbitMQ transport of the outbox: the relay hands it claimed messages
// and it publishes them over AMQP 0-9-1 with publisher confirms, reporting per message what the
// broker confirmed.
//
//	t, err := rabbitmq.New(ctx, rabbitmq.Config{
//		Connection: rabbitmq.Connection{URL: "amqp://outbox:secret@rabbit:5672/prod"},
//		Exchange:   "events",        // a topic exchange you declared
//		RoutingKey: "orders.{type}", // {type} and {key} are replaced per message
//	})
//	...
//	relay, err := outbox.NewRelay(store, t, outbox.Config{})
//
// # Confirms, returns and what counts as published
//
// Every Publish shares one connection and one channel in confirm mode. A Publish sends all its
// messages first and then waits for the broker's confirm of each, so a batch costs one round
// trip, not one per message. A message counts as published only when the broker acknowledged
// it: a basic.nack (a full queue with x-overflow=reject-publish, a broker that failed to store
// it) fails it, and so does a basic.return, since messages go out with mandatory set and the
// broker returns one that no queue is bound to take — an unroutable message is a failure, not a
// silent loss. A message whose confirm never came, because the channel or connection closed
// first, is reported failed (ErrConnectionLost), never published; the relay then publishes it
// again, which may duplicate it as promise 3 allows. Messages are persistent (delivery mode 2):
// with durable queues, a confirm means the broker has written them to disk.
//
// # What a consumer receives
//
// The body is the envelope of the package this project grew from, unless RawPayload is set:
//
//	{"id":"0192…","eventType":"USER_CREATED","payload":{…},"result":{…},"timestamp":"2026-01-02T03:04:05.678Z"}
//
// Properties: message-id = the message ID (consumers deduplicate by it), type = the message
// Type, timestamp = its creation time, content-type application/json, delivery-mode 2. The
// headers table holds every message header as a string, plus outbox.type (the Type) and
// outbox.key (the Key, when not empty).
//
// # Routing
//
// Messages go to Exchange (default "", the default exchange, which delivers to the queue named
// by the routing key) with the routing key RoutingKey, a template where {type} is the message
// Type and {key} its Key (default "{type}"). Route overrides both per message. The transport
// never declares exchanges or queues: topology belongs to the service. It checks once per
// connection that an exchange exists, because publishing to a missing one makes the broker close
// the channel under every Publish in flight; messages for a missing exchange fail on their own.
//
// # Errors
//
// Whatever concerns the broker rather than a message is an outage, marked with outbox.Unavailable
// so the relay pauses instead of charging attempts: a refused or lost connection, rejected
// credentials, a missing vhost or exchange, an unroutable or nacked message, and a connection
// the broker blocked (connection.blocked, during a memory or disk alarm: Publish then fails at
// once rather than hang until the publish timeout). Errors no retry can fix are marked with
// outbox.Permanent, so the relay dead-letters the message at once: a body above MaxMessageBytes
// (checked before sending) or above the broker's max_message_size (reported by the broker; the
// transport then adopts that limit), an exchange name, routing key or header name above the
// AMQP limit of 255 bytes, a payload that is not JSON.
//
// # Connections
//
// New does not connect. The first Publish dials, and a Publish after the connection or channel
// was lost dials again; after a failed dial the next attempt waits ReconnectMin, doubling up to
// ReconnectMax, and a Publish inside that wait fails at once as an outage. Every socket write is
// bounded by WriteTimeout: a broker that stops reading (it does while it blocks publishers, or
// when it hangs) would otherwise hold a Publish in a write no context can interrupt; the
// connection is closed instead, and what waited for a confirm fails. The transport never
// retries a message itself: that is the relay's and middleware/retry's job. The URL's password
// and KeyPassword never appear under any fmt verb, in JSON or in errors.
//
// The connection settings are a Connection, shared by Config and ConsumerConfig. Its Conn takes
// an *amqp.Connection the service already has: the transport and the consumer then open their
// channels on it, never close it, and never dial it again once it closed (see Connection.Conn).
//
// # Order
//
// Messages of one Publish go out in slice order on one channel, and RabbitMQ keeps a channel's
// order into each queue, so a consumer of one queue sees them in that order. A failure does not
// stop later messages, though: by default the whole batch is sent before any confirm is known.
// With KeepKeyOrder the transport keeps each Key's order and stops a Key at its first failure
// (outbox.KeyOrderer): a Key's next message is sent only after the broker confirmed the previous
// one, so the relay's Ordered mode can hand it a Key's consecutive messages in one batch. A
// batch then takes one round trip per message of its busiest Key. Competing consumers, requeues
// and dead-letter exchanges reorder messages on the consumer side whatever the publisher does.
package rabbitmq
