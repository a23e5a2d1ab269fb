package outboxtest

import (
	"context"
	"testing"

	"github.com/txoutbox/outbox"
)

// StoreHarness is one fresh, isolated store (its own schema, table or collection) for one test.
type StoreHarness struct {
	// Store is the store under test.
	Store outbox.Store
	// Add writes msgs in one committed transaction through the backend's write side, which runs
	// backend.Prepare on them (so IDs and CreatedAt are assigned and bad messages refused).
	Add func(ctx context.Context, msgs ...*outbox.Message) error
	// AddRolledBack writes msgs in a transaction that is then rolled back. Required when
	// StoreFeatures.Transactions is set.
	AddRolledBack func(ctx context.Context, msgs ...*outbox.Message) error
	// Reopen returns another Store over the same data, as a second relay process would open it.
	// Optional: the concurrent-claim tests use Store itself when nil.
	Reopen func(t *testing.T) outbox.Store
	// AddOpen writes msgs in a transaction it leaves open; commit ends it. The harness rolls an
	// uncommitted one back at cleanup. Optional: the commit-order case needs it.
	AddOpen func(ctx context.Context, msgs ...*outbox.Message) (commit func() error, err error)
	// Corrupt damages the stored message id behind the store's back, as a hand-made fix or a
	// buggy script would (for example a Type with a control character, or headers that are not
	// strings), so that it no longer passes the root package's Message.ValidateStored. Optional: the
	// corrupt-message cases need it.
	Corrupt func(ctx context.Context, id string) error
	// Restart closes Store cleanly, as a process whose relay has stopped does, and returns a
	// store over the same data as the next relay process opens it, once everything committed
	// before is claimable from it (a streaming store has streamed it). The case must not use
	// Store or the write functions after it. Optional: the clean-stop cases need it.
	Restart func(t *testing.T) outbox.Store
	// CutStream is for stores that stream what is written (the PostgreSQL WAL mode) and hold
	// that stream alone: it cuts the path Store streams on while its other connections keep
	// working (a partition of that one path, a load balancer's idle cut), and returns once Store
	// has seen that its stream ended. Its reconnects on that path fail from then on. Optional,
	// with Standby: the lost-stream case needs both.
	CutStream func(t *testing.T)
	// Standby opens another store over the same data, on a path of its own, and returns once it
	// holds the stream that Store lost (after CutStream) and has streamed everything committed
	// before, as a standby relay process takes over.
	Standby func(t *testing.T) outbox.Store
}

// StoreFactory returns a fresh harness for t and registers its cleanup with t.Cleanup.
type StoreFactory func(t *testing.T) StoreHarness

// StoreFeatures says what a store supports; the suite skips what it does not.
type StoreFeatures struct {
	// Transactions: writes are atomic with the caller's transaction (AddRolledBack works).
	Transactions bool
	// ConcurrentClaims: claims are atomic across goroutines and processes.
	ConcurrentClaims bool
	// Notifier: the store implements outbox.Notifier.
	Notifier bool
	// Inspector: the store implements outbox.Inspector.
	Inspector bool
	// Retention: the store keeps delivered messages and implements outbox.Retention.
	Retention bool
	// AcceptsDuplicateIDs: the write side cannot see what was written before (the PostgreSQL
	// WAL mode keeps no rows), so a second write of a used ID is not refused.
	AcceptsDuplicateIDs bool
	// MaxPayloadBytes is the payload limit the store's Add enforces.
	// Default outbox.DefaultMaxPayloadBytes.
	MaxPayloadBytes int
}

// RunStoreSuite runs the store contract against the stores newStore returns.
func RunStoreSuite(t *testing.T, newStore StoreFactory, f StoreFeatures) {
	if f.MaxPayloadBytes == 0 {
		f.MaxPayloadBytes = outbox.DefaultMaxPayloadBytes
	}
	s := &storeSuite{newStore: newStore, f: f}
	t.Run("Claim", s.testClaim)
	t.Run("Lease", s.testLease)
	t.Run("Ack", s.testAck)
	t.Run("Nack", s.testNack)
	t.Run("Dead", s.testDead)
	t.Run("Fencing", s.testFencing)
	t.Run("Ordered", s.testOrdered)
	t.Run("Concurrent", s.testConcurrent)
	t.Run("Notifier", s.testNotifier)
	t.Run("Inspector", s.testInspector)
	t.Run("Retention", s.testRetention)
	t.Run("Transactions", s.testTransactions)
	t.Run("BadInput", s.testBadInput)
	t.Run("Corrupt", s.testCorrupt)
	t.Run("Relay", s.testRelay)
	t.Run("CleanStop", s.testCleanStop)
	t.Run("LostStream", s.testLostStream)
}

type storeSuite struct {
	newStore StoreFactory
	f        StoreFeatures
}

// TransportHarness is one fresh, isolated transport (its own queue) for one test.
type TransportHarness struct {
	Transport outbox.Transport
	// Receive returns the next n messages a consumer of the destination receives, decoded
	// (ID, Type, Payload, Result, CreatedAt, and Key and Headers where the transport carries
	// them), waiting until ctx ends. It returns what it has with ctx's error when fewer arrive.
	Receive func(ctx context.Context, n int) ([]*outbox.Message, error)
}

// TransportFactory returns a fresh harness for t and registers its cleanup with t.Cleanup.
type TransportFactory func(t *testing.T) TransportHarness

// TransportFeatures says what a transport supports; the suite skips what it does not.
type TransportFeatures struct {
	// Headers: message headers reach the consumer.
	Headers bool
	// Keys: the message Key reaches the consumer.
	Keys bool
	// Ordered: messages with the same Key are received in publish order.
	Ordered bool
	// MaxMessageBytes: a larger message fails with a permanent error. Zero: no limit to test.
	MaxMessageBytes int
}

// RunTransportSuite runs the transport contract against the transports newTransport returns.
func RunTransportSuite(t *testing.T, newTransport TransportFactory, f TransportFeatures) {
	s := &transportSuite{newTransport: newTransport, f: f}
	t.Run("RoundTrip", s.testRoundTrip)
	t.Run("Batch", s.testBatch)
	t.Run("Ordered", s.testOrdered)
	t.Run("Oversized", s.testOversized)
	t.Run("Cancelled", s.testCancelled)
}

type transportSuite struct {
	newTransport TransportFactory
	f            TransportFeatures
}
