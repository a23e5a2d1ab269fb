//go:build torture

package torture

import (
	"context"

	"github.com/txoutbox/outbox"
)

// outboxTable is what the checks read of a lane's outbox, the part of them that differs
// between a PostgreSQL lane (*database) and a MySQL one (*mysqlDatabase).
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

func (db *database) inspector() outbox.Inspector { return db.store }

func (db *database) row(ctx context.Context, id string) (r outboxRow, err error) {
	err = db.admin.QueryRow(ctx, "SELECT status, coalesce(lease_owner, ''), attempts, coalesce(last_error, '') FROM "+db.table("outbox")+" WHERE id = $1", id).
		Scan(&r.status, &r.owner, &r.attempts, &r.lastErr)
	return r, err
}

func (db *mysqlDatabase) inspector() outbox.Inspector { return db.store }

func (db *mysqlDatabase) row(ctx context.Context, id string) (r outboxRow, err error) {
	err = db.store.DB().QueryRowContext(ctx, "SELECT status, COALESCE(lease_owner, ''), attempts, COALESCE(last_error, '') FROM outbox WHERE id = ?", id).
		Scan(&r.status, &r.owner, &r.attempts, &r.lastErr)
	return r, err
}
