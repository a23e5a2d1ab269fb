package inbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Inbox records which messages each consumer has processed, in a PostgreSQL table. It is safe
// for concurrent use.
type Inbox struct {
	cfg   Config
	pool  *pgxpool.Pool
	table string // quoted, schema-qualified
	q     queries
}

type queries struct {
	record, recorded, prune string
}

// New returns an inbox over the table cfg names, using pool (which it never closes) for Handle,
// EnsureSchema and retention. It does not create the table: call EnsureSchema or run SchemaSQL.
func New(pool *pgxpool.Pool, cfg Config) (*Inbox, error) {
	if pool == nil {
		return nil, invalid("new", backend.InvalidArgument("pool", "is nil"))
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	t := pgx.Identifier{cfg.Schema, cfg.Table}.Sanitize()
	return &Inbox{cfg: cfg, pool: pool, table: t, q: queries{
		// The record comes first: it is what a concurrent delivery of the same message waits on.
		record:   "INSERT INTO " + t + " (consumer, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
		recorded: "SELECT EXISTS (SELECT 1 FROM " + t + " WHERE consumer = $1 AND message_id = $2)",
		// Bounded: the subquery picks at most $2 rows; SKIP LOCKED lets two pruners share work.
		prune: "DELETE FROM " + t + " WHERE (consumer, message_id) IN (SELECT consumer, message_id FROM " + t +
			" WHERE processed_at < now() - $1::bigint * interval '1 microsecond' ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
	}}, nil
}

// Config returns the config with defaults applied.
func (in *Inbox) Config() Config { return in.cfg }

// Handle processes msg for consumer exactly once. In one transaction of the pool it records
// (consumer, msg.ID) and, when that record is new, runs fn with the transaction, then commits.
// When the record existed already, fn does not run, nothing changes, and Handle returns
// duplicate=true with a nil error: acknowledge the message to the broker.
//
// When fn returns an error Handle rolls back and returns that error unchanged; when fn panics it
// rolls back and re-raises. Either way nothing is recorded, so a redelivery is processed. fn
// must do its work with tx and must not commit or roll it back. A failed commit is returned as
// an error; whether it took effect, a redelivery finds out.
func (in *Inbox) Handle(ctx context.Context, consumer string, msg *outbox.Message, fn func(ctx context.Context, tx pgx.Tx) error) (duplicate bool, err error) {
	if err := checkArgs("handle", consumer, msg, fn == nil); err != nil {
		return false, err
	}
	tx, err := in.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("%s: handle: begin: %w", component, err)
	}
	committed := false
	defer func() {
		if !committed {
			// Rollback needs a live context even when ctx was what failed.
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = tx.Rollback(rbCtx)
			cancel()
		}
	}()
	tag, err := tx.Exec(ctx, in.q.record, consumer, msg.ID)
	if err != nil {
		return false, fmt.Errorf("%s: handle %s: record: %w", component, msg.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return true, nil
	}
	if err := fn(ctx, tx); err != nil {
		return false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("%s: handle %s: commit: %w", component, msg.ID, err)
	}
	committed = true
	return false, nil
}

// HandleSQL is Handle for database/sql users: it runs in a transaction of db, which may come
// from any PostgreSQL driver (pgx's stdlib, lib/pq). The inbox table is the same.
func (in *Inbox) HandleSQL(ctx context.Context, db *sql.DB, consumer string, msg *outbox.Message, fn func(ctx context.Context, tx *sql.Tx) error) (duplicate bool, err error) {
	if db == nil {
		return false, invalid("handle", backend.InvalidArgument("db", "is nil"))
	}
	if err := checkArgs("handle", consumer, msg, fn == nil); err != nil {
		return false, err
	}
	tx, err := db.BeginTx(ctx, nil)
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
	if err := in.pool.QueryRow(ctx, in.q.recorded, consumer, id).Scan(&ok); err != nil {
		return false, fmt.Errorf("%s: processed: %w", component, err)
	}
	return ok, nil
}
