package postgres_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
)

// privateServer is a PostgreSQL server of the test's own (initdb in a temporary directory, a
// free port, wal_level=logical), for faults that must not touch the shared server.
type privateServer struct {
	bin, dir string
	port     int
}

func startPrivateServer(t *testing.T) *privateServer {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		outboxtest.NeedService(t, "PostgreSQL server binaries (pg_ctl, initdb) for a private server", fmt.Errorf("none under /usr/lib/postgresql"))
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "outbox-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	srv := &privateServer{bin: bin, dir: dir, port: port}
	// PostgreSQL refuses to run as root: the server runs as the postgres user when the tests
	// run as root.
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v: %s", err, out)
		}
	}
	srv.run(t, "initdb", "-D", dir+"/data", "-A", "trust", "-U", "root", "--no-sync")
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nwal_level = logical\nfsync = off\n", port, dir)
	srv.run(t, "sh", "-c", "cat >> "+dir+"/data/postgresql.conf <<'EOF'\n"+conf+"EOF")
	srv.run(t, "pg_ctl", "-D", dir+"/data", "-l", dir+"/log", "-w", "start")
	t.Cleanup(func() { _ = srv.ctl("stop", "-m", "immediate") })
	return srv
}

func (srv *privateServer) command(name string, args ...string) *exec.Cmd {
	if name != "sh" {
		name = filepath.Join(srv.bin, name)
	}
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func (srv *privateServer) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := srv.command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// ctl runs pg_ctl with a bound: a stop that waits for a reader that never lets go would hang.
func (srv *privateServer) ctl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := srv.command("pg_ctl", append([]string{"-D", srv.dir + "/data", "-w", "-t", "15"}, args...)...)
	out, err := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (srv *privateServer) url() string {
	return fmt.Sprintf("postgres://root@127.0.0.1:%d/postgres?sslmode=disable", srv.port)
}

// A server shuts down (fast mode) within seconds while a reader holds the slot, whether the
// reader has settled everything or holds unsettled messages: a shutting-down server waits until
// its readers confirm all it sent, so a reader that only ever confirmed settled transactions
// would hold the shutdown forever. After the restart the unsettled messages still arrive.
// Checked to fail (the stop times out) without the reader's answer to the server's waiting.
func TestWALServerShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private PostgreSQL server")
	}
	srv := startPrivateServer(t)
	cfg := postgres.Config{URL: srv.url(), WAL: &postgres.WALConfig{StatusInterval: 100 * time.Millisecond, TakeoverInterval: 100 * time.Millisecond}}
	s := openStore(t, cfg)
	ctx := context.Background()

	for _, settled := range []bool{true, false} {
		m := msg(t, "T", "", 1)
		walAdd(t, s, m)
		got := claimAll(t, s, fmt.Sprint("claim-", settled))
		if len(got) != 1 {
			t.Fatalf("claimed %d, want 1", len(got))
		}
		if settled {
			if _, err := s.Ack(ctx, fmt.Sprint("claim-", settled), idsOf(got)); err != nil {
				t.Fatal(err)
			}
		} else if _, err := s.Nack(ctx, "claim-false", []outbox.Failure{{ID: m.ID, Release: true}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := srv.ctl("stop", "-m", "fast"); err != nil {
			t.Fatalf("settled=%t: the server did not stop while the reader held the slot: %v", settled, err)
		}
		t.Logf("settled=%t: stopped in %v", settled, time.Since(start).Round(time.Millisecond))
		if err := srv.ctl("start", "-l", srv.dir+"/log"); err != nil {
			t.Fatal(err)
		}
		// The pool's connections died with the server: wait until it has fresh ones.
		waitFor(t, 20*time.Second, "the pool to reconnect", func() bool {
			_, err := s.Pool().Exec(ctx, "SELECT 1")
			return err == nil
		})
		if !settled {
			var again []*outbox.Message
			waitFor(t, 20*time.Second, "the released message to be claimable after the restart", func() bool {
				again = claimAll(t, s, "after")
				return len(again) > 0
			})
			if again[0].ID != m.ID {
				t.Fatalf("after the restart claimed %v, want %s", idsOf(again), m.ID)
			}
			if _, err := s.Ack(ctx, "after", idsOf(again)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = s.Close()
}

// PostgreSQL before 17 writes a slot's confirmed position to disk only now and then, so after a
// crash the slot streams again transactions that were settled and confirmed. The reader keeps
// the position it confirmed in a table of its own and skips them. Checked to fail (the settled
// messages come back) without that table.
func TestWALServerCrashStreamsNothingTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private PostgreSQL server")
	}
	srv := startPrivateServer(t)
	cfg := postgres.Config{URL: srv.url(), WAL: &postgres.WALConfig{StatusInterval: 50 * time.Millisecond, TakeoverInterval: 100 * time.Millisecond}}
	s := openStore(t, cfg)
	ctx := context.Background()
	// Two rounds of messages, each settled and confirmed: the server writes the slot to disk
	// when its restart position can move (the first round), not for the second.
	var end string
	for round := range 2 {
		settled := make([]*outbox.Message, 20)
		for i := range settled {
			settled[i] = msg(t, "T", "", round*100+i)
		}
		walAdd(t, s, settled...)
		token := fmt.Sprint("round-", round)
		got := claimAll(t, s, token)
		if len(got) != len(settled) {
			t.Fatalf("round %d: claimed %d, want %d", round, len(got), len(settled))
		}
		if _, err := s.Ack(ctx, token, idsOf(got)); err != nil {
			t.Fatal(err)
		}
		if err := s.Pool().QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&end); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the slot to confirm the settled messages", func() bool {
			var past bool
			err := s.Pool().QueryRow(ctx, "SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots", end).Scan(&past)
			return err == nil && past
		})
	}
	if err := srv.ctl("stop", "-m", "immediate"); err != nil { // a crash: nothing more reaches the disk
		t.Fatal(err)
	}
	if err := srv.ctl("start", "-l", srv.dir+"/log"); err != nil {
		t.Fatal(err)
	}
	// A relay started afresh (it crashed with the server, or another one takes over) has only
	// the slot and the table to go by.
	_ = s.Close()
	s = openStore(t, cfg)
	after := msg(t, "T", "", 999)
	walAdd(t, s, after)
	again := claimAll(t, s, "b")
	if len(again) != 1 || again[0].ID != after.ID {
		t.Fatalf("after the crash claimed %d messages; want only the new one (%d settled ones streamed again)", len(again), len(again)-1)
	}
	_ = s.Close()
}
