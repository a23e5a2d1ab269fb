package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/store/mysql"
	"github.com/txoutbox/outbox/store/postgres"
	"github.com/txoutbox/outbox/store/sqlite"
)

const versionUsage = `outbox version: print the version of the outbox command, of the outbox modules it is built from
and the table layouts (schema versions) it knows; with a store, the schema version that store's table is at.

Usage:
  outbox version [--store URL [--schema S] [--table T]]
  outbox --version`

func runVersion(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox version"
	f := newFlags(cmd, versionUsage)
	sf := addStoreFlags(f)
	timeout := f.fs.Duration("timeout", 10*time.Second, "with --store: bound on connecting and asking")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	printVersion(e)
	if sf.url == "" {
		return nil
	}
	ctx, store, done, err := sf.open(ctx, cmd, *timeout)
	if err != nil {
		return err
	}
	defer done()
	sv, ok := store.backend.(schemaVersioner)
	if !ok {
		fmt.Fprintf(e.stdout, "%s: this store does not record a schema version yet (every store but the memory one does)\n", store.name)
		return nil
	}
	v, err := sv.SchemaVersion(ctx)
	if err != nil {
		return failed(cmd, fmt.Errorf("%s: %s", store.name, sf.scrub(err.Error())))
	}
	known := knownSchemaVersion(store.backend)
	switch {
	case v == 0:
		fmt.Fprintf(e.stdout, "%s: no outbox table (schema version 0): run outbox migrate\n", store.name)
	case v < known:
		fmt.Fprintf(e.stdout, "%s: schema version %d; this outbox knows up to %d: run outbox migrate\n", store.name, v, known)
	case v > known:
		fmt.Fprintf(e.stdout, "%s: schema version %d; this outbox knows up to %d: upgrade the binary\n", store.name, v, known)
	default:
		fmt.Fprintf(e.stdout, "%s: schema version %d, up to date\n", store.name, v)
	}
	return nil
}

// printVersion prints the module version of the command (as `go install …@version` recorded it;
// "(devel)" for a build from a source tree) and of each outbox module linked in.
func printVersion(e *env) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(e.stdout, "outbox (unknown version) %s\n", runtime.Version())
		return
	}
	fmt.Fprintf(e.stdout, "outbox %s %s\n", moduleVersion(info.Main), runtime.Version())
	for _, dep := range info.Deps {
		if strings.HasPrefix(dep.Path, "github.com/txoutbox/outbox") {
			fmt.Fprintf(e.stdout, "  %s %s\n", dep.Path, moduleVersion(*dep))
		}
	}
	fmt.Fprintf(e.stdout, "schema versions: PostgreSQL %d, MySQL %d, SQLite %d, MongoDB %d\n", postgres.SchemaVersion, mysql.SchemaVersion, sqlite.SchemaVersion, mongo.SchemaVersion)
}

func moduleVersion(m debug.Module) string {
	if m.Replace != nil {
		return m.Replace.Version + " (replaced by " + m.Replace.Path + ")"
	}
	if m.Version == "" {
		return "(devel)"
	}
	return m.Version
}
