package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Inbox records which messages each consumer has processed, in a MySQL or MariaDB table. It is
// safe for concurrent use.
type Inbox struct {
	cfg Config
	db  *sql.DB
	q   queries
}

type queries struct {
	record, recorded, prune string
}

// New returns an inbox over cfg's table in db, which it never closes (an outbox store's DB()
// will do). New does not create the table: call EnsureSchema or run SchemaSQL.
func New(db *sql.DB, cfg Config) (*Inbox, error) {
	if db == nil {
		return nil, invalid("new", backend.InvalidArgument("db", "is nil"))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := quote(cfg.Table)
	return &Inbox{cfg: cfg, db: db, q: queries{
		// The update changes nothing, so a duplicate affects 0 rows.
		record:   "INSERT INTO " + t + " (consumer, message_id, processed_at) VALUES (?, ?, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE consumer = consumer",
		recorded: "SELECT EXISTS (SELECT 1 FROM " + t + " WHERE consumer = ? AND message_id = ?)",
		prune:    "DELETE FROM " + t + " WHERE processed_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND ORDER BY processed_at LIMIT ?",
	}}, nil
}

// Config returns the config with defaults applied.
func (in *Inbox) Config() Config { return in.cfg }

// Handle processes msg for consumer exactly once. In one transaction of the database it records
// (consumer, msg.ID) and, when that record is new, runs fn with the transaction, then commits.
// When the record existed already, fn does not run, nothing changes, and Handle returns
// duplicate=true with a nil error: acknowledge the message to the broker.
//
// A second delivery of a message whose first is still in its transaction waits (bounded by
// innodb_lock_wait_timeout) at the record, then reports a duplicate when the first committed,
// or processes it when the first rolled back.
//
// When fn returns an error Handle rolls back and returns that error unchanged; when fn panics it
// rolls back and re-raises. Either way nothing is recorded, so a redelivery is processed. fn
// must do its work with tx and must not commit or roll it back.
func (in *Inbox) Handle(ctx context.Context, consumer string, msg *outbox.Message, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error) {
	if err := checkArgs("handle", consumer, msg, fn == nil); err != nil {
		return false, err
	}
	tx, err := in.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("%s: handle: begin: %w", component, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx, in.q.record, consumer, msg.ID)
	if err != nil {
		return false, fmt.Errorf("%s: handle %s: record: %w", component, msg.ID, explain(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, fmt.Errorf("%s: handle %s: record: %w", component, msg.ID, err)
	} else if n == 0 {
		return true, nil
	}
	if err := fn(ctx, tx); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("%s: handle %s: commit: %w", component, msg.ID, err)
	}
	committed = true
	return false, nil
}

// Processed reports whether consumer has processed the message with this id.
func (in *Inbox) Processed(ctx context.Context, consumer, id string) (bool, error) {
	var ok bool
	if err := in.db.QueryRowContext(ctx, in.q.recorded, consumer, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("%s: processed: %w", component, explain(err))
	}
	return ok, nil
}

// explain adds what to do to a missing table.
func explain(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1146 { // ER_NO_SUCH_TABLE
		return fmt.Errorf("%w (create it with Inbox.EnsureSchema, or apply SchemaSQL)", err)
	}
	return err
}
