package inbox

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// nowMillis is SQLite's clock in milliseconds since the Unix epoch (julianday works on every
// SQLite version, unlike unixepoch('subsec')).
const nowMillis = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

// Inbox records which messages each consumer has processed, in a SQLite table. It is safe for
// concurrent use.
type Inbox struct {
	cfg Config
	db  *sql.DB
	q   queries
}

type queries struct {
	record, recorded, prune string
}

// New returns an inbox over cfg's table in db, which it never closes. Open db with
// sqlite.DSN(path, busyTimeout) (driver "sqlite"), or use an outbox store's DB(), so that
// transactions take the write lock at once and wait for each other within the busy timeout.
// New does not create the table: call EnsureSchema or run SchemaSQL.
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
		record:   "INSERT INTO " + t + " (consumer, message_id, processed_at) VALUES (?, ?, " + nowMillis + ") ON CONFLICT DO NOTHING",
		recorded: "SELECT EXISTS (SELECT 1 FROM " + t + " WHERE consumer = ? AND message_id = ?)",
		prune: "DELETE FROM " + t + " WHERE rowid IN (SELECT rowid FROM " + t +
			" WHERE processed_at < " + nowMillis + " - ? ORDER BY processed_at LIMIT ?)",
	}}, nil
}

// Config returns the config with defaults applied.
func (in *Inbox) Config() Config { return in.cfg }

// Handle processes msg for consumer exactly once. In one transaction of the database it records
// (consumer, msg.ID) and, when that record is new, runs fn with the transaction, then commits.
// When the record existed already, fn does not run, nothing changes, and Handle returns
// duplicate=true with a nil error: acknowledge the message to the broker.
//
// When fn returns an error Handle rolls back and returns that error unchanged; when fn panics it
// rolls back and re-raises. Either way nothing is recorded, so a redelivery is processed. fn
// must do its work with tx (with a one-connection pool, a query on the *sql.DB itself would
// wait for Handle) and must not commit or roll it back.
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
		return false, fmt.Errorf("%s: handle %s: record: %w", component, msg.ID, err)
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
		return false, fmt.Errorf("%s: processed: %w", component, err)
	}
	return ok, nil
}
