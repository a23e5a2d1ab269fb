// Package backend is for authors of stores, transports and middleware, not for applications: it
// holds the policy that every backend applies the same way, so that a contract's edge cases are
// decided once instead of once per backend.
//
//   - Write side: Prepare runs the write hooks, assigns ID and CreatedAt and validates each
//     message; every store's Add calls it first.
//   - Claim: ValidateStored says when a message read back is corrupt, ClaimSieve sorts the
//     messages of a claim (return, dead-letter with CorruptFailure, or hand back behind a corrupt
//     head of its key).
//   - Ack and Nack: CheckToken, SettleableIDs (IDs that cannot name a message are ignored) and
//     StorableText (failure text every database can hold).
//   - Publish: EncodeEnvelope and DecodeEnvelope (the wire format consumers read), MaxAttempts
//     and FailureIsFinal (for middleware that logs or counts dead letters).
//   - Errors and secrets: InvalidArgument, CheckIdentifier, CheckInboxArgs, URLRedactor and
//     ScrubSecrets.
//
// An application needs none of it: it calls package outbox, a store and a transport. How to
// write a backend, and the suites it must pass (package outboxtest), are in docs/extending.md.
package backend
