package outboxtest

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// InboxFunc stands for a consumer's handler in the inbox suite. effect applies the business
// change (one row naming the consumer and the message) in the transaction Handle opened, so the
// suite can count how often a delivery took effect.
type InboxFunc func(ctx context.Context, effect func(ctx context.Context) error) error

// InboxHarness is one fresh, isolated inbox (its own table or collection) with a business table
// its handlers write to, for one test.
type InboxHarness struct {
	// Handle calls the backend's Handle for consumer and msg with a handler that runs fn,
	// giving it the effect that writes the business row with Handle's transaction. A nil fn
	// must reach the backend as a nil handler (the bad-input tests check the error).
	Handle func(ctx context.Context, consumer string, msg *outbox.Message, fn InboxFunc) (duplicate bool, err error)
	// Effects counts the business rows written for consumer and message id: how many times
	// a delivery took effect.
	Effects func(ctx context.Context, consumer, id string) (int, error)
	// Recorded reports whether the inbox holds a record for consumer and message id.
	Recorded func(ctx context.Context, consumer, id string) (bool, error)
	// Age moves the record of consumer and id back in time so that it looks processed age ago
	// by the database's clock. Required with InboxFeatures.Retention.
	Age func(ctx context.Context, consumer, id string, age time.Duration) error
	// Prune is the backend's retention call: it deletes at most limit records older than
	// olderThan (by the database's clock) and returns how many. Required with Retention.
	Prune func(ctx context.Context, olderThan time.Duration, limit int) (int, error)
	// WaitBlocked waits until some delivery is blocked in the database behind another's
	// uncommitted record, so the race tests can prove the loser waited for the winner rather
	// than arriving after it. Optional: without it the second delivery simply starts while the
	// first one's transaction is open.
	WaitBlocked func(ctx context.Context) error
}

// InboxFactory returns a fresh harness for t and registers its cleanup with t.Cleanup.
type InboxFactory func(t *testing.T) InboxHarness

// InboxFeatures says what an inbox supports; the suite skips what it does not.
type InboxFeatures struct {
	// Transactions: the record and the business change commit or roll back together. Without
	// it (a MongoDB server without transactions) only the bad-input cases run.
	Transactions bool
	// Concurrent: deliveries of one message may run at the same time (from goroutines or
	// processes) and the store's unique key decides which one takes effect.
	Concurrent bool
	// Retention: Age and Prune are set.
	Retention bool
}

// RunInboxSuite runs the inbox contract: a delivery takes effect once per consumer however
// often it is delivered, a handler's failure leaves no trace so a redelivery can succeed,
// concurrent deliveries take effect once, old records are pruned in bounded batches, and bad
// input is refused with errors that name it.
func RunInboxSuite(t *testing.T, newInbox InboxFactory, f InboxFeatures) {
	s := &inboxSuite{newInbox: newInbox, f: f}
	t.Run("Handle", s.testHandle)
	t.Run("Duplicate", s.testDuplicate)
	t.Run("Consumers", s.testConsumers)
	t.Run("Rollback", s.testRollback)
	t.Run("Panic", s.testPanic)
	t.Run("Race", s.testRace)
	t.Run("RaceWinnerRollsBack", s.testRaceWinnerRollsBack)
	t.Run("ManyRacers", s.testManyRacers)
	t.Run("Retention", s.testRetention)
	t.Run("BadInput", s.testInboxBadInput)
}

type inboxSuite struct {
	newInbox InboxFactory
	f        InboxFeatures
}

func (s *inboxSuite) needTransactions(t *testing.T) {
	t.Helper()
	if !s.f.Transactions {
		t.Skip("the inbox has no transactions here")
	}
}

// inboxMessage returns a message as a consumer decodes it: with an ID assigned at write.
func inboxMessage(t *testing.T) *outbox.Message {
	t.Helper()
	msgs := NewMessages(1, "INBOX_TEST", "")
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs[0]
}

// applyEffect is the usual handler: apply the business change, succeed.
func applyEffect(ctx context.Context, effect func(ctx context.Context) error) error {
	return effect(ctx)
}

func mustEffects(t *testing.T, h InboxHarness, consumer, id string, want int) {
	t.Helper()
	n, err := h.Effects(testCtx(t), consumer, id)
	if err != nil {
		t.Fatalf("count effects: %v", err)
	}
	if n != want {
		t.Fatalf("message %s took effect %d time(s) for %s, want %d", id, n, consumer, want)
	}
}

func mustRecorded(t *testing.T, h InboxHarness, consumer, id string, want bool) {
	t.Helper()
	got, err := h.Recorded(testCtx(t), consumer, id)
	if err != nil {
		t.Fatalf("recorded: %v", err)
	}
	if got != want {
		t.Fatalf("inbox record of %s for %s: %t, want %t", id, consumer, got, want)
	}
}

func mustHandle(t *testing.T, h InboxHarness, consumer string, m *outbox.Message, fn InboxFunc, wantDup bool) {
	t.Helper()
	dup, err := h.Handle(testCtx(t), consumer, m, fn)
	if err != nil {
		t.Fatalf("handle %s for %s: %v", m.ID, consumer, err)
	}
	if dup != wantDup {
		t.Fatalf("handle %s for %s: duplicate=%t, want %t", m.ID, consumer, dup, wantDup)
	}
}
