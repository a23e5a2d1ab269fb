//go:build torture

package torture

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/sqs"
)

// repoRoot is the repository's root, seen from this package's directory (where go test runs).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func postgresURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
}

// adminPool connects to PostgreSQL for setup and inspection, or skips (fails in CI).
func adminPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, postgresURL())
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		outboxtest.NeedService(t, "PostgreSQL at "+postgresURL(), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// fauxqs is an SQS server of the torture tests' own, started with scripts/services/fauxqs on a
// free port. It is private because the SQS outage scenario freezes it: freezing the shared
// server would fail every other test using it at that moment. fauxqs keeps its queues in
// memory only, so an outage is simulated by freezing the process (SIGSTOP, then SIGCONT):
// killing it would be the broker losing its data, which no outbox can make up for.
type fauxqs struct {
	endpoint string
	pid      int
	tr       *sqs.Transport // owns the admin client's connections
	frozen   bool
}

func startFauxqs(t *testing.T) *fauxqs {
	t.Helper()
	root := repoRoot(t)
	port := freePort(t)
	script := filepath.Join(root, "scripts", "services", "fauxqs")
	run := func(action string) (string, error) {
		cmd := exec.Command(script, action)
		cmd.Env = append(os.Environ(), "FAUXQS_PORT="+strconv.Itoa(port))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("start"); err != nil {
		outboxtest.NeedService(t, "fauxqs (scripts/services/fauxqs)", fmt.Errorf("%v: %s", err, out))
	}
	f := &fauxqs{endpoint: fmt.Sprintf("http://127.0.0.1:%d", port)}
	t.Cleanup(func() {
		f.thaw(t)
		if out, err := run("stop"); err != nil {
			t.Errorf("stop fauxqs: %v: %s", err, out)
		} else if !t.Failed() {
			// Each run has a port of its own: keep the cache free of their logs.
			_ = os.Remove(filepath.Join(root, ".cache", "fauxqs", fmt.Sprintf("fauxqs-%d.log", port)))
		}
	})
	pidText, err := os.ReadFile(filepath.Join(root, ".cache", "fauxqs", fmt.Sprintf("fauxqs-%d.pid", port)))
	if err != nil {
		t.Fatalf("fauxqs pidfile: %v", err)
	}
	if f.pid, err = strconv.Atoi(strings.TrimSpace(string(pidText))); err != nil {
		t.Fatalf("fauxqs pidfile: %v", err)
	}
	f.tr, err = sqs.New(context.Background(), sqs.Config{QueueURL: "unused",
		Connection: sqs.Connection{Endpoint: f.endpoint, Region: "us-east-1", AccessKeyID: "torture", SecretAccessKey: "torture"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.tr.Close() })
	return f
}

// freePort returns a loopback TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (f *fauxqs) client() *awssqs.Client { return f.tr.Client() }

// createQueue creates a queue (FIFO when fifo) and returns its URL. The server is stopped with
// its queues when the test ends.
func (f *fauxqs) createQueue(t *testing.T, name string, fifo bool) string {
	t.Helper()
	url, err := f.tryCreateQueue(name, fifo)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// tryCreateQueue is createQueue for a goroutine other than the test's.
func (f *fauxqs) tryCreateQueue(name string, fifo bool) (string, error) {
	in := &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		// A message received but not deleted (a consumer's delete lost to the outage) comes
		// back soon, so it is not mistaken for lost at the end.
		"VisibilityTimeout": "5",
	}}
	if fifo {
		in.QueueName = aws.String(name + ".fifo")
		in.Attributes["FifoQueue"] = "true"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := f.client().CreateQueue(ctx, in)
	if err != nil {
		return "", fmt.Errorf("create queue %s: %w", aws.ToString(in.QueueName), err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// freeze stops the server process (SIGSTOP): connections stay open, requests hang.
func (f *fauxqs) freeze(t *testing.T) {
	if err := syscall.Kill(f.pid, syscall.SIGSTOP); err != nil {
		t.Errorf("freeze fauxqs (pid %d): %v", f.pid, err)
		return
	}
	f.frozen = true
}

// thaw resumes a frozen server (SIGCONT).
func (f *fauxqs) thaw(t *testing.T) {
	if !f.frozen {
		return
	}
	if err := syscall.Kill(f.pid, syscall.SIGCONT); err != nil {
		t.Errorf("thaw fauxqs (pid %d): %v", f.pid, err)
		return
	}
	f.frozen = false
}

// pgCluster is the local PostgreSQL cluster the tests restart: OUTBOX_TORTURE_PG_CLUSTER
// ("15 main"), or the only version under /etc/postgresql with its cluster main.
func pgCluster(t *testing.T) []string {
	t.Helper()
	if c := os.Getenv("OUTBOX_TORTURE_PG_CLUSTER"); c != "" {
		return strings.Fields(c)
	}
	versions, err := os.ReadDir("/etc/postgresql")
	if err == nil && len(versions) != 1 {
		err = fmt.Errorf("found %d versions in /etc/postgresql; set OUTBOX_TORTURE_PG_CLUSTER", len(versions))
	}
	if err == nil {
		_, err = exec.LookPath("pg_ctlcluster")
	}
	if err != nil {
		outboxtest.NeedService(t, "a local PostgreSQL cluster controlled by pg_ctlcluster", err)
	}
	return []string{versions[0].Name(), "main"}
}

// pgctl runs pg_ctlcluster on the cluster (stop, start). Debian's pg_ctlcluster stops in fast
// mode: open transactions are rolled back and every client is disconnected.
func pgctl(cluster []string, action string) error {
	args := append([]string{"--skip-systemctl-redirect"}, cluster...)
	args = append(args, action)
	out, err := exec.Command("pg_ctlcluster", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctlcluster %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// privatePostgres is a PostgreSQL server of a scenario's own: initdb in a temporary directory,
// a free loopback port, wal_level=logical, trust authentication for root. The WAL scenario that
// restarts PostgreSQL restarts this one, not the machine's: a server shutting down waits for
// every logical replication reader connected to it, other users' included, and refuses new
// connections meanwhile.
type privatePostgres struct {
	bin, dir string
	port     int
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		outboxtest.NeedService(t, "PostgreSQL server binaries (initdb, pg_ctl) for a private server", fmt.Errorf("none under /usr/lib/postgresql"))
	}
	// Not t.TempDir(): the postgres user must reach it, and the test's directories are root's.
	dir, err := os.MkdirTemp("", "outbox-torture-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv := &privatePostgres{bin: filepath.Dir(bins[len(bins)-1]), dir: dir, port: freePort(t)}
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: the server runs as the postgres user.
		if out, err := exec.Command("chown", "postgres", srv.dir).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v: %s", srv.dir, err, out)
		}
	}
	if out, err := srv.command("initdb", "-D", srv.data(), "-A", "trust", "-U", "root", "--no-sync").CombinedOutput(); err != nil {
		outboxtest.NeedService(t, "a private PostgreSQL server (initdb)", fmt.Errorf("%v: %s", err, out))
	}
	conf := fmt.Sprintf("port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nwal_level = logical\nfsync = off\nmax_connections = 200\n", srv.port, srv.dir)
	f, err := os.OpenFile(filepath.Join(srv.data(), "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("postgresql.conf: %v", err)
	}
	if err := srv.ctl("start", "-l", srv.log()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.ctl("stop", "-m", "immediate"); err != nil {
			t.Errorf("stop the private PostgreSQL: %v", err)
		}
	})
	return srv
}

func (srv *privatePostgres) data() string { return filepath.Join(srv.dir, "data") }
func (srv *privatePostgres) log() string  { return filepath.Join(srv.dir, "log") }

func (srv *privatePostgres) url() string {
	return fmt.Sprintf("postgres://root@127.0.0.1:%d/postgres?sslmode=disable", srv.port)
}

// command runs one of the server's programs, as the postgres user when the tests run as root.
func (srv *privatePostgres) command(name string, args ...string) *exec.Cmd {
	name = filepath.Join(srv.bin, name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// ctl runs pg_ctl and waits at most 15 s for it: a fast shutdown waits for the server's
// replication readers, and one that never confirms what it was sent holds it forever.
func (srv *privatePostgres) ctl(args ...string) error {
	args = append([]string{"-D", srv.data(), "-w", "-t", "15"}, args...)
	if out, err := srv.command("pg_ctl", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// pool connects to the server for setup and inspection.
func (srv *privatePostgres) pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, srv.url())
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		t.Fatalf("private PostgreSQL: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// restart stops the server in fast mode (as pg_ctlcluster does: open transactions rolled
// back, every client disconnected), keeps it down for pgDowntime and starts it again. A stop
// that does not finish within pg_ctl's bound is reported, and the server crashed (immediate
// mode) so that the run goes on.
func (srv *privatePostgres) restart(t *testing.T) {
	t.Logf("stopping the private PostgreSQL (fast mode) for %v", pgDowntime)
	began := time.Now()
	if err := srv.ctl("stop", "-m", "fast"); err != nil {
		t.Errorf("the private PostgreSQL did not shut down with the relays connected: %v", err)
		if err := srv.ctl("stop", "-m", "immediate"); err != nil {
			t.Errorf("%v", err)
		}
	}
	t.Logf("PostgreSQL stopped after %v", time.Since(began).Round(time.Millisecond))
	time.Sleep(pgDowntime)
	if err := srv.ctl("start", "-l", srv.log()); err != nil {
		t.Errorf("%v", err)
		return
	}
	t.Logf("PostgreSQL back after %v", time.Since(began).Round(time.Millisecond))
}
