package mysqlbench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/mysql"
)

// samplePayload is a typical small event body, the same as pgbench's.
var samplePayload = []byte(`{"order_id":1234567,"customer":"c-42","amount":"129.90","currency":"EUR","items":3}`)

// sandbox is an outbox table of its own (and its key-lock table) for one scenario, with a store
// over it.
type sandbox struct {
	store *mysql.Store
	db    *sql.DB
	table string // unquoted; a checked identifier
}

// newSandbox opens a store on url over table (a fresh random name when empty), creates its
// tables and keeps up to conns connections idle: database/sql keeps 2 by default, so more
// concurrent transactions than that would open and close a connection each time.
func newSandbox(ctx context.Context, url, table string, conns int) (*sandbox, error) {
	if table == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		table = "outbox_bench_" + hex.EncodeToString(b[:])
	}
	store, err := mysql.New(ctx, mysql.Config{URL: outbox.Secret(url), Table: table})
	if err != nil {
		return nil, err
	}
	sb := &sandbox{store: store, db: store.DB(), table: table}
	sb.db.SetMaxIdleConns(conns)
	if err := store.EnsureSchema(ctx); err != nil {
		sb.drop()
		return nil, err
	}
	return sb, nil
}

// quoted is name quoted as a MySQL identifier; the names here are checked identifiers.
func quoted(name string) string { return "`" + name + "`" }

// t is the outbox table, quoted.
func (sb *sandbox) t() string { return quoted(sb.table) }

// drop removes the scenario's tables and closes the store: the outbox table and every table
// named after it (<table>_…: the store's key-lock and schema-version tables, the business
// table of the write scenario), whatever auxiliary tables the store's version keeps.
func (sb *sandbox) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	defer func() { _ = sb.store.Close() }()
	rows, err := sb.db.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND (table_name = ? OR table_name LIKE ?)",
		sb.table, strings.ReplaceAll(sb.table, "_", `\_`)+`\_%`)
	if err != nil {
		return
	}
	var names []string
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil && backend.CheckIdentifier("mysqlbench", "table", name) == nil {
			names = append(names, quoted(name))
		}
	}
	// A failed listing drops what it found; the next run's tables have names of their own.
	_ = rows.Err()
	_ = rows.Close()
	if len(names) > 0 {
		_, _ = sb.db.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(names, ", "))
	}
}

// fill writes n events through Add, in transactions of 1000, events taking turns over keys
// keys as writes from many aggregates interleave, then analyzes the table so every run starts
// from the same statistics.
func (sb *sandbox) fill(ctx context.Context, n, keys int) error {
	const per = 1000
	for done := 0; done < n; done += per {
		batch := make([]*outbox.Message, 0, per)
		for i := done; i < n && i < done+per; i++ {
			batch = append(batch, &outbox.Message{Type: "ORDER_CREATED", Key: fmt.Sprintf("order-%d", i%keys), Payload: samplePayload})
		}
		if err := sb.inTx(ctx, func(tx *sql.Tx) error { return sb.store.Add(ctx, tx, batch...) }); err != nil {
			return fmt.Errorf("mysqlbench: fill: %w", err)
		}
	}
	if _, err := sb.db.ExecContext(ctx, "ANALYZE TABLE "+sb.t()); err != nil {
		return fmt.Errorf("mysqlbench: analyze: %w", err)
	}
	return nil
}

// inTx runs fn in a transaction of the server's default isolation and commits.
func (sb *sandbox) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return inTx(ctx, sb.db, nil, fn)
}

func inTx(ctx context.Context, db *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (sb *sandbox) count(ctx context.Context) (int, error) {
	var n int
	err := sb.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+sb.t()).Scan(&n)
	return n, err
}

// ratio returns a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
