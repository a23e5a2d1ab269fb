package main

import (
	"strings"
	"testing"
)

// parseStore parses a command line's store flags, with vars as the environment.
func parseStore(t *testing.T, vars map[string]string, args ...string) (*storeFlags, error) {
	t.Helper()
	f := newFlags("outbox status", "")
	sf := addStoreFlags(f)
	e := &env{stdout: &strings.Builder{}, stderr: &strings.Builder{}, getenv: func(k string) string { return vars[k] }}
	return sf, f.parse(e, args, false)
}

// --wal-max-buffered-bytes (OUTBOX_WAL_MAX_BUFFERED_BYTES) sets the WAL reader's byte bound; the
// store refuses one under 1 MiB.
func TestWALMaxBufferedBytesFlag(t *testing.T) {
	const store = "postgres://app@127.0.0.1:1/db"
	for _, c := range []struct {
		name string
		args []string
		vars map[string]string
		want int64
	}{
		{"flag", []string{"--store", store, "--postgres-mode", "wal", "--wal-max-buffered-bytes", "8388608"}, nil, 8 << 20},
		{"variable", []string{"--store", store, "--postgres-mode", "wal"}, map[string]string{"OUTBOX_WAL_MAX_BUFFERED_BYTES": "2097152"}, 2 << 20},
		{"flag over variable", []string{"--store", store, "--postgres-mode", "wal", "--wal-max-buffered-bytes", "3145728"}, map[string]string{"OUTBOX_WAL_MAX_BUFFERED_BYTES": "2097152"}, 3 << 20},
		{"default", []string{"--store", store, "--postgres-mode", "wal"}, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			sf, err := parseStore(t, c.vars, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			target, err := sf.target("status")
			if err != nil {
				t.Fatal(err)
			}
			if w := target.Postgres.WAL; w == nil || w.MaxBufferedBytes != c.want {
				t.Fatalf("WAL config %+v, want MaxBufferedBytes %d", w, c.want)
			}
		})
	}
	sf, err := parseStore(t, nil, "--store", store, "--postgres-mode", "wal", "--wal-max-buffered-bytes", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sf.target("status"); err == nil || !strings.Contains(err.Error(), "--wal-max-buffered-bytes") || !strings.Contains(err.Error(), "under 1 MiB") {
		t.Fatalf("a bound of 1000 bytes: %v, want it refused under the flag's name", err)
	}
	sf, err = parseStore(t, nil, "--store", store, "--wal-max-buffered-bytes", "8388608")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sf.target("status"); err == nil || !strings.Contains(err.Error(), "applies to the WAL mode only") {
		t.Fatalf("the bound in table mode: %v, want it refused", err)
	}
	if _, err := parseStore(t, nil, "--store", store, "--postgres-mode", "wal", "--wal-max-buffered-bytes", "64MiB"); err == nil || !strings.Contains(err.Error(), "--wal-max-buffered-bytes") {
		t.Fatalf("a bound of 64MiB: %v, want an error naming the flag", err)
	}
}
