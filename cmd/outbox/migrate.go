package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/store/mysql"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/sqlite"
)

const migrateUsage = `Usage: outbox migrate --store URL [--schema S] [--table T | --collection C] [--postgres-mode wal]
       outbox migrate --print-sql [--from VERSION] [--store postgres://…|mysql://…|sqlite:PATH] [--schema S] [--table T] [--postgres-mode wal]
       outbox migrate --drop-slot --store postgres://… --postgres-mode wal [--wal-slot S]

Creates the outbox table and its indexes, or adds what an older version lacks: the backend's
EnsureSchema. It is idempotent and safe to run from several replicas at
once. --print-sql prints the DDL instead, for migration tools (golang-migrate, goose, atlas),
without connecting; without --store it prints PostgreSQL's.

Every database store records the table's schema version beside it (<table>_schema;
<collection>_schema on MongoDB), and migrate prints the version it leaves; a table at a version newer than this binary knows is refused. --print-sql
--from VERSION prints only what upgrades a table at VERSION (0, the default, is everything);
outbox version --store URL shows the version a database is at.

In PostgreSQL's WAL mode (--postgres-mode wal) it also creates the publication and the logical
replication slot the relay reads (as a role with REPLICATION), and --print-sql prints their SQL
too. --drop-slot removes the slot and the publication: do it when leaving WAL mode or removing
the service, since an abandoned slot keeps every WAL segment written after it until the disk
fills. It fails while a relay reads the slot; messages not yet streamed are lost with it.`

func runMigrate(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox migrate"
	f := newFlags(cmd, migrateUsage)
	sf := addStoreFlags(f)
	printSQL := f.fs.Bool("print-sql", false, "print the DDL instead of running it")
	fromFlag := f.fs.Int("from", 0, "with --print-sql: the schema version the table is at, to print only what upgrades it (PostgreSQL, MySQL, SQLite; 0 is everything)")
	dropSlot := f.fs.Bool("drop-slot", false, "WAL mode: drop the replication slot and the publication instead of creating anything")
	timeout := f.fs.Duration("timeout", time.Minute, "bound on the whole migration")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	switch {
	case *dropSlot && *printSQL:
		return usagef(cmd, "--drop-slot and --print-sql exclude each other")
	case *dropSlot && !sf.walMode():
		return usagef(cmd, "--drop-slot: there is a replication slot only in WAL mode: add --postgres-mode wal (OUTBOX_POSTGRES_MODE=wal), with the --wal-slot the relay uses")
	case f.given["from"] && !*printSQL:
		return usagef(cmd, "--from goes with --print-sql: migrate itself reads the version from the database")
	case *printSQL:
		return printDDL(e, cmd, sf, *fromFlag)
	}
	ctx, store, done, err := sf.open(ctx, cmd, *timeout)
	if err != nil {
		return err
	}
	defer done()
	if *dropSlot {
		return dropWAL(ctx, e, cmd, store)
	}
	_, checks := store.backend.(outbox.SchemaChecker)
	var se *outbox.SchemaError
	before := store.checkSchema(ctx)
	wasMissing := errors.As(before, &se) && se.Problem == outbox.SchemaMissing
	if before != nil && !wasMissing {
		return failed(cmd, before) // another table of that name: creating indexes on it would fail
	}
	sv, versioned := store.backend.(schemaVersioner)
	var from int
	if versioned {
		var err error
		if from, err = sv.SchemaVersion(ctx); err != nil {
			return failed(cmd, fmt.Errorf("%s: %s", store.name, sf.scrub(err.Error())))
		}
	}
	if err := store.EnsureSchema(ctx); err != nil {
		return failed(cmd, fmt.Errorf("%s: %s", store.name, sf.scrub(err.Error())))
	}
	at := ""
	if versioned {
		to, err := sv.SchemaVersion(ctx)
		if err != nil {
			return failed(cmd, fmt.Errorf("%s: %s", store.name, sf.scrub(err.Error())))
		}
		at = fmt.Sprintf(" at schema version %d", to)
		if !wasMissing && from < to {
			at = fmt.Sprintf(" upgraded from schema version %d to %d", from, to)
		}
	}
	switch {
	case !checks:
		fmt.Fprintf(e.stdout, "schema of %s is up to date\n", store.name)
	case wasMissing:
		fmt.Fprintf(e.stdout, "created the table and indexes of %s%s: the schema is up to date\n", store.name, at)
	default:
		fmt.Fprintf(e.stdout, "%s exists%s: the schema is up to date\n", store.name, at)
	}
	if store.wal != nil {
		st, err := store.wal.SlotStatus(ctx)
		if err != nil {
			return failed(cmd, fmt.Errorf("%s: %w", store.name, err))
		}
		fmt.Fprintf(e.stdout, "replication slot %s and its publication exist (WAL mode)\n", st.Slot)
	}
	return nil
}

// dropWAL removes the WAL mode's slot and publication.
func dropWAL(ctx context.Context, e *env, cmd string, store *openedStore) error {
	st, err := store.wal.SlotStatus(ctx)
	if err != nil {
		return failed(cmd, fmt.Errorf("%s: %w", store.name, err))
	}
	if st.Active {
		return failed(cmd, fmt.Errorf("%s: replication slot %s is read by a relay (server process %d): stop the relays first", store.name, st.Slot, st.ActivePID))
	}
	if err := store.wal.DropSlot(ctx); err != nil {
		return failed(cmd, fmt.Errorf("%s: %w", store.name, err))
	}
	if st.Exists {
		fmt.Fprintf(e.stdout, "dropped replication slot %s and its publication\n", st.Slot)
	} else {
		fmt.Fprintf(e.stdout, "replication slot %s did not exist; its publication is dropped\n", st.Slot)
	}
	return nil
}

// schemaVersioner is a store that records its table's schema version (every database store).
type schemaVersioner interface {
	SchemaVersion(ctx context.Context) (int, error)
}

// knownSchemaVersion is the newest schema version this binary knows for the store's backend.
func knownSchemaVersion(backend any) int {
	switch backend.(type) {
	case *sqlite.Store:
		return sqlite.SchemaVersion
	case *mongo.Store:
		return mongo.SchemaVersion
	case *mysql.Store:
		return mysql.SchemaVersion
	}
	return postgres.SchemaVersion
}

// printDDL prints the SQL EnsureSchema would run from schema version from, connecting to nothing.
func printDDL(e *env, cmd string, sf *storeFlags, from int) error {
	if err := sf.checkGiven(cmd); err != nil {
		return err
	}
	kind := storeurl.Postgres
	if sf.url == "" {
		if err := sf.opts.Check(kind); err != nil {
			return sf.optionError(cmd, err)
		}
	} else {
		t, err := sf.target(cmd)
		if err != nil {
			return err
		}
		kind = t.Kind
	}
	var (
		ddl string
		err error
	)
	if from != 0 && kind != storeurl.Postgres && kind != storeurl.SQLite && kind != storeurl.MySQL {
		return usagef(cmd, "--from: %s has no SQL to print; run outbox migrate against it", kind)
	}
	switch kind {
	case storeurl.Postgres:
		ddl, err = postgres.UpgradeSQL(orDefault(sf.opts.Schema, "public"), orDefault(sf.opts.Table, "outbox"), from)
		if ae := (*outbox.ArgumentError)(nil); errors.As(err, &ae) {
			return usagef(cmd, "--from: %s", ae.Problem)
		}
		if err == nil && sf.walMode() {
			var wal string
			if wal, err = walDDL(sf); err == nil {
				ddl = strings.TrimRight(ddl, "\n") + "\n\n-- WAL mode: the publication and the logical replication slot the relay reads.\n" + wal
			}
		}
	case storeurl.SQLite:
		ddl, err = sqlite.UpgradeSQL(orDefault(sf.opts.Table, "outbox"), from)
		if ae := (*outbox.ArgumentError)(nil); errors.As(err, &ae) {
			return usagef(cmd, "--from: %s", ae.Problem)
		}
	case storeurl.MySQL:
		ddl, err = mysql.UpgradeSQL(orDefault(sf.opts.Table, "outbox"), from)
		if ae := (*outbox.ArgumentError)(nil); errors.As(err, &ae) {
			return usagef(cmd, "--from: %s", ae.Problem)
		}
	default:
		return usagef(cmd, "--print-sql: %s has no SQL; run outbox migrate against it to create its indexes", kind)
	}
	if err != nil {
		return sf.optionError(cmd, err)
	}
	fmt.Fprintln(e.stdout, ddl)
	return nil
}

// walDDL is the WAL mode's SQL for the flags' schema, table and slot settings.
func walDDL(sf *storeFlags) (string, error) {
	w := sf.opts.WAL
	return postgres.WALSQL(postgres.Config{Schema: sf.opts.Schema, Table: sf.opts.Table, WAL: &w})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
