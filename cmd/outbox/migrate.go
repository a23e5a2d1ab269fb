package main

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/sqlite"
)

const migrateUsage = `Usage: outbox migrate --store URL [--schema S] [--table T | --collection C]
       outbox migrate --print-sql [--store postgres://…|sqlite:PATH] [--schema S] [--table T]

Creates the outbox table and its indexes, or adds what an older version lacks: the backend's
EnsureSchema (MongoDB: EnsureIndexes). It is idempotent and safe to run from several replicas at
once. --print-sql prints the DDL instead, for migration tools (golang-migrate, goose, atlas),
without connecting; without --store it prints PostgreSQL's.`

func runMigrate(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox migrate"
	f := newFlags(cmd, migrateUsage)
	sf := addStoreFlags(f)
	printSQL := f.fs.Bool("print-sql", false, "print the DDL instead of running it")
	timeout := f.fs.Duration("timeout", time.Minute, "bound on the whole migration")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	if *printSQL {
		return printDDL(e, cmd, sf)
	}
	ctx, store, done, err := sf.open(ctx, cmd, *timeout)
	if err != nil {
		return err
	}
	defer done()
	if err := store.EnsureSchema(ctx); err != nil {
		return failed(cmd, fmt.Errorf("%s: %w", store.name, err))
	}
	fmt.Fprintf(e.stdout, "schema of %s is up to date\n", store.name)
	return nil
}

// printDDL prints the SQL EnsureSchema would run, connecting to nothing.
func printDDL(e *env, cmd string, sf *storeFlags) error {
	if err := sf.checkGiven(cmd); err != nil {
		return err
	}
	kind := storeurl.Postgres
	if sf.url != "" {
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
	switch kind {
	case storeurl.Postgres:
		ddl, err = postgres.SchemaSQL(orDefault(sf.opts.Schema, "public"), orDefault(sf.opts.Table, "outbox"))
	case storeurl.SQLite:
		ddl, err = sqlite.Schema(orDefault(sf.opts.Table, "outbox"))
	default:
		return usagef(cmd, "--print-sql: %s has no SQL; run outbox migrate against it to create its indexes", kind)
	}
	if err != nil {
		return sf.optionError(cmd, err)
	}
	fmt.Fprintln(e.stdout, ddl)
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
