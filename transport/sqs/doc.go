// Package sqs is the Amazon SQS transport of the outbox: the relay hands it claimed messages and
// it publishes them with SendMessageBatch, reporting per message what SQS accepted.
//
//	t, err := sqs.New(ctx, sqs.Config{
//		Connection: sqs.Connection{Region: "eu-west-1"}, // keys omitted: the default AWS credential chain
//		QueueURL:   "https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo",
//	})
//	...
//	relay, err := outbox.NewRelay(store, t, outbox.Config{})
//
// # Credentials
//
// The credentials are a Connection, shared by Config and ConsumerConfig. With no keys in it the
// client uses the default AWS credential chain (environment, shared profile, SSO, web identity,
// IAM role). The origin package's explicit Region, AccessKeyID, SecretAccessKey and Endpoint
// work as they did there (the keys are outbox.Secret fields); or pass your own aws.Config or
// *sqs.Client. Secrets never appear under any fmt verb, in JSON, errors or logs.
//
// # What a consumer receives
//
// The body is the envelope of the package this project grew from, unless RawPayload is set:
//
//	{"id":"0192…","eventType":"USER_CREATED","payload":{…},"result":{…},"timestamp":"2026-01-02T03:04:05.678Z"}
//
// Message attributes, all of data type String:
//   - every non-empty header, under its own name (traceparent and tracestate included, so a
//     consumer continues the trace); SQS cannot carry an empty value, so empty headers are
//     left out;
//   - outbox.type: the message Type, always;
//   - outbox.key: the message Key, when it is not empty;
//   - outbox.id: the message ID, only with RawPayload, whose body lacks it.
//
// SQS allows 10 attributes per message, so a message may have at most 9 non-empty headers
// (8 with a Key, 7 with a Key and RawPayload); one with more fails permanently, with an error
// that counts them, and is dead-lettered rather than silently stripped. Header names must be
// valid SQS attribute names (letters, digits, _ - .; not starting with AWS. or Amazon.).
//
// # FIFO queues
//
// A queue whose URL or name ends in .fifo gets MessageGroupId = Key (or DefaultGroupID for
// messages without one) and MessageDeduplicationId = the message ID, so SQS drops a duplicate
// publish of the same message within its 5-minute deduplication window. Batches that share a
// Key are sent one after the other, and a failed message holds back the later messages with its
// Key in the same Publish, so the order of a Key survives failures and retries (messages
// without a Key promise no order and never wait). Keys that are not valid group IDs (spaces,
// non-ASCII) are sent as a digest of the key. Inside one SendMessageBatch call SQS alone decides:
// if it refuses one entry it may still accept a later entry of the same Key. For strict per-Key
// order run the relay in Ordered mode, which never hands the transport two messages of one Key
// at once.
//
// # Batching, size and errors
//
// A Publish call is split per destination queue into SendMessageBatch calls of at most 10
// messages and MaxBatchBytes bytes, at most Concurrency of them in flight per Transport. Each
// message is sized as SQS counts it (body plus attribute names, types and values) before
// sending: one above MaxMessageBytes fails permanently on its own while the others are sent.
// Batch entry Ids are the message's position in the call, mapped back to message IDs.
//
// Errors that no retry can fix are marked with outbox.Permanent, so the relay dead-letters their
// messages at once: oversized messages, too many attributes, characters SQS refuses, failures
// SQS flags as the sender's fault or as invalid parameters, and a queue that does not exist.
// Throttling, server errors, network errors and timeouts are retryable. Rejected credentials
// and denied permissions are retryable too, with an error that says so: they are the relay's
// configuration, not any message's fault, and marking them permanent would dead-letter the
// whole outbox over one expired key.
//
// The transport never retries by itself: the SDK's retryer is switched off on each of its calls,
// since retrying is the relay's and middleware/retry's job and SDK retries underneath would
// multiply attempts and outlast the publish timeout. A wrong endpoint therefore fails fast.
//
// # Routing
//
// Routes maps a message Type to its own queue; Route can decide per message; everything else
// goes to QueueURL. Each destination may be a queue URL or a queue name; names are resolved
// once with GetQueueUrl and cached.
package sqs
