//go:build torture

package torture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/txoutbox/outbox/outboxtest"
)

// mysqlServerURL is the machine's MariaDB (or MySQL), as scripts/services/mariadb sets it up:
// the user outbox may create the outbox_test_* databases the lanes use.
func mysqlServerURL() string {
	return outboxtest.ServiceAddr("OUTBOX_TEST_MYSQL_URL", "mysql://outbox:outbox@127.0.0.1:3306/outbox_test")
}

// withDatabase returns the mysql:// URL base with its database replaced by db.
func withDatabase(base, db string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("MySQL URL: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

// openMySQL opens a database/sql handle on a mysql:// URL, for setup and inspection (the
// lanes' stores open their own).
func openMySQL(raw string) (*sql.DB, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "mysql" {
		return nil, fmt.Errorf("not a mysql:// URL")
	}
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", u.Host, strings.TrimPrefix(u.Path, "/")
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.ParseTime, cfg.Loc, cfg.Timeout = true, time.UTC, 2*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// mysqlAdmin connects to the machine's MariaDB for setup, or skips (fails in CI).
func mysqlAdmin(t *testing.T) *sql.DB {
	t.Helper()
	db, err := openMySQL(mysqlServerURL())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err != nil {
			_ = db.Close()
		}
	}
	if err != nil {
		outboxtest.NeedService(t, "MariaDB at "+mysqlServerURL(), err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// privateMariaDB is a MariaDB server of a scenario's own, the one the database-restart scenario
// stops and crashes: mariadb-install-db into a temporary directory, a free loopback port, a
// user torture (password torture) with every privilege. Restarting the machine's server would
// fail every other test using it at that moment.
type privateMariaDB struct {
	bin, dir string
	port     int
	cmd      *exec.Cmd
	done     chan struct{} // closed when the running mariadbd has exited
}

func startPrivateMariaDB(t *testing.T) *privateMariaDB {
	t.Helper()
	bin := findProgram("mariadbd", "/usr/sbin/mariadbd", "mysqld", "/usr/sbin/mysqld")
	install := findProgram("mariadb-install-db", "mysql_install_db")
	if bin == "" || install == "" {
		outboxtest.NeedService(t, "MariaDB server programs (mariadbd, mariadb-install-db) for a private server", errors.New("not installed"))
	}
	dir, err := os.MkdirTemp("", "outbox-torture-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	srv := &privateMariaDB{bin: bin, dir: dir, port: freePort(t)}
	args := []string{"--no-defaults", "--datadir=" + srv.data(), "--auth-root-authentication-method=socket", "--skip-test-db"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		outboxtest.NeedService(t, "a private MariaDB server ("+filepath.Base(install)+")", fmt.Errorf("%v: %s", err, out))
	}
	// Run at every start: the user exists from the first one on.
	initSQL := "CREATE USER IF NOT EXISTS 'torture'@'%' IDENTIFIED BY 'torture';\nGRANT ALL PRIVILEGES ON *.* TO 'torture'@'%';\n"
	if err := os.WriteFile(filepath.Join(dir, "init.sql"), []byte(initSQL), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.stop(syscall.SIGTERM); err != nil {
			t.Errorf("stop the private MariaDB: %v", err)
		}
	})
	return srv
}

// findProgram returns the first of names found on PATH (or as an absolute path), or "".
func findProgram(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

func (srv *privateMariaDB) data() string { return filepath.Join(srv.dir, "data") }

// url is the server's mysql:// URL for database db.
func (srv *privateMariaDB) url(db string) string {
	return fmt.Sprintf("mysql://torture:torture@127.0.0.1:%d/%s", srv.port, db)
}

// start launches mariadbd and waits (at most 30 s) until it answers.
func (srv *privateMariaDB) start() error {
	args := []string{"--no-defaults", "--datadir=" + srv.data(), "--socket=" + filepath.Join(srv.dir, "sock"),
		fmt.Sprintf("--port=%d", srv.port), "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
		"--pid-file=" + filepath.Join(srv.dir, "pid"), "--log-error=" + filepath.Join(srv.dir, "error.log"),
		"--init-file=" + filepath.Join(srv.dir, "init.sql"), "--innodb-buffer-pool-size=64M", "--max-connections=300"}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	srv.cmd = exec.Command(srv.bin, args...)
	srv.done = make(chan struct{})
	if err := srv.cmd.Start(); err != nil {
		return fmt.Errorf("start mariadbd: %w", err)
	}
	cmd, done := srv.cmd, srv.done
	go func() { _ = cmd.Wait(); close(done) }()
	db, err := openMySQL(srv.url(""))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("mariadbd exited at start: %s", tail(filepath.Join(srv.dir, "error.log")))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mariadbd not answering 30 s after its start (%v): %s", err, tail(filepath.Join(srv.dir, "error.log")))
		}
	}
}

// stop sends sig to mariadbd (SIGTERM: a normal shutdown, open transactions rolled back and
// every client disconnected; SIGKILL: a crash, recovered from the redo log at the next start)
// and waits at most 30 s for it to exit.
func (srv *privateMariaDB) stop(sig syscall.Signal) error {
	select {
	case <-srv.done:
		return nil
	default:
	}
	if err := srv.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-srv.done:
		return nil
	case <-time.After(30 * time.Second):
		_ = srv.cmd.Process.Signal(syscall.SIGKILL)
		<-srv.done
		return fmt.Errorf("mariadbd did not exit within 30 s of %v: %s", sig, tail(filepath.Join(srv.dir, "error.log")))
	}
}

// restart stops the server (a normal shutdown, or a crash), keeps it down for pgDowntime and
// starts it again. It runs in a goroutine of its own, so it reports with t.Errorf only.
func (srv *privateMariaDB) restart(t *testing.T, crash bool) {
	how, sig := "shutting down", syscall.SIGTERM
	if crash {
		how, sig = "crashing (SIGKILL)", syscall.SIGKILL
	}
	t.Logf("%s the private MariaDB for %v", how, pgDowntime)
	began := time.Now()
	if err := srv.stop(sig); err != nil {
		t.Errorf("%v", err)
	}
	t.Logf("MariaDB stopped after %v", time.Since(began).Round(time.Millisecond))
	time.Sleep(pgDowntime)
	if err := srv.start(); err != nil {
		t.Errorf("%v", err)
		return
	}
	t.Logf("MariaDB back after %v", time.Since(began).Round(time.Millisecond))
}
