//go:build torture

package torture

import (
	"context"

	"github.com/txoutbox/outbox"
)

// laneDB is a lane's database, its outbox table and the business tables beside it: what the
// writers and the checks do there that differs between a PostgreSQL lane (*database) and a
// MySQL one (*mysqlDatabase). Everything else about a lane is the same for both.
type laneDB interface {
	outboxTable
	businessDB
	contendedDB
}

// outboxTable is what the checks read of a lane's outbox.
type outboxTable interface {
	// inspector is the writers' store: counts, dead messages and purges.
	inspector() outbox.Inspector
	// row reads the outbox row of id as it stands, to say where an undelivered event is.
	row(ctx context.Context, id string) (outboxRow, error)
}

// outboxRow is the state of one row of an outbox table.
type outboxRow struct {
	status, owner, lastErr string
	attempts               int
}

// businessDB is how a writer writes its business transactions: order (writer, n), the
// business row of the writer's transaction n, with the transaction's events msgs, whose key is
// key. The row is how a writer finds out whether a transaction whose COMMIT failed committed.
type businessDB interface {
	// commitOrder writes order (writer, n) and msgs in one transaction with the store's Execute,
	// whose result (n) every event carries.
	commitOrder(ctx context.Context, writer, n int, key string, msgs []*outbox.Message) error
	// rollBackOrder writes order (writer, n) and msgs in a transaction and rolls it back. A
	// failing step (the database down) only ends the transaction sooner: nothing commits.
	rollBackOrder(ctx context.Context, writer, n int, key string, msgs []*outbox.Message)
	// failAfterAdd runs w's transaction n so that its business change fails after its events
	// were added, as a service's does, and records them rolled back in w's ledger. It returns
	// an error only when the transaction did not fail as it must.
	failAfterAdd(ctx context.Context, w *writer, n int) error
	// orderExists reports whether order (writer, n) is committed.
	orderExists(ctx context.Context, writer, n int) (bool, error)
}

// contendedDB is how contended writers take their place in a key's commit order: a
// commit_order row per key, which a transaction increments and so keeps locked until it ends.
type contendedDB interface {
	// createPositions creates the commit_order row of each of keys, at 0.
	createPositions(ctx context.Context, keys []string) error
	// beginContended opens a contended writer's transaction.
	beginContended(ctx context.Context) (contendedTx, error)
}

// contendedTx is an open transaction of a contended writer.
type contendedTx interface {
	add(ctx context.Context, msgs ...*outbox.Message) error
	// takePosition increments key's commit_order row and returns its new value.
	takePosition(ctx context.Context, key string) (int64, error)
	commit(ctx context.Context) error
	// rollback ends the transaction unless it ended already (then it does nothing harmful).
	rollback(ctx context.Context) error
}
