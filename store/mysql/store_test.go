package mysql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/outbox"
)

func TestCheckVersion(t *testing.T) {
	for _, c := range []struct {
		v  string
		ok bool
	}{
		{"10.11.19-MariaDB-0+deb12u1", true}, {"10.6.0-MariaDB", true}, {"10.5.23-MariaDB", false},
		{"8.0.1", true}, {"8.4.2", true}, {"8.0.0-dmr", false}, {"5.7.44-log", false},
	} {
		err := checkVersion(c.v)
		if (err == nil) != c.ok {
			t.Errorf("checkVersion(%q) = %v", c.v, err)
		}
		if err != nil && !strings.Contains(err.Error(), c.v) {
			t.Errorf("error %q does not name the version", err)
		}
	}
}

func TestConfigHidesSecrets(t *testing.T) {
	for _, c := range []Config{
		{URL: "mysql://u:hunter2@127.0.0.1:1/db"},
		{DSN: "u:hunter2@tcp(127.0.0.1:1)/db"},
		{Host: "127.0.0.1", Port: 1, User: "u", Password: "hunter2"},
	} {
		for _, out := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
			if strings.Contains(out, "hunter2") {
				t.Errorf("config printed its secret: %s", out)
			}
		}
		c.ConnectTimeout = 1
		if _, err := New(context.Background(), c); err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("New: %v", err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	var ce *outbox.ConfigError
	for _, c := range []Config{
		{URL: "mysql://a@b/c", DSN: "a@tcp(b)/c"}, {URL: "http://x/y"}, {DSN: "not a dsn("},
		{Port: 70000}, {Table: "a;drop"}, {URL: "mysql://a@b/c", Host: "x"}, {MaxOpenConns: -1},
	} {
		if err := c.Validate(); !errors.As(err, &ce) {
			t.Errorf("Validate(%+v) = %v, want a ConfigError", c, err)
		}
	}
}

func testURL() string {
	if u := os.Getenv("OUTBOX_TEST_MYSQL_URL"); u != "" {
		return u
	}
	return "mysql://outbox:outbox@127.0.0.1:3306/outbox_test"
}

// testStore opens a store over a fresh table (dropped at the end) with its schema ensured.
func testStore(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "outbox_" + hex.EncodeToString(b[:])
	s, err := New(ctx, Config{URL: outbox.Secret(testURL()), Table: table})
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("MariaDB: %v", err)
		}
		t.Skipf("MariaDB not reachable (scripts/services/mariadb start): %v", err)
	}
	t.Cleanup(func() {
		_, _ = s.DB().ExecContext(ctx, "DROP TABLE IF EXISTS "+s.table+", "+s.keys+", "+quote(s.cfg.Table+"_schema"))
		_ = s.Close()
	})
	for range 2 { // idempotent
		if err := s.EnsureSchema(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// The pool keeps as many idle connections as it may open, so writers reuse them.
func TestPoolSize(t *testing.T) {
	s := testStore(t)
	if got := s.DB().Stats().MaxOpenConnections; got != DefaultMaxOpenConns {
		t.Fatalf("MaxOpenConnections = %d, want %d", got, DefaultMaxOpenConns)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { _ = s.DB().PingContext(context.Background()) })
	}
	wg.Wait()
	before := s.DB().Stats()
	for range 8 {
		wg.Go(func() {
			if _, err := s.DB().ExecContext(context.Background(), "SELECT SLEEP(0.05)"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := s.DB().Stats(); st.MaxIdleClosed != before.MaxIdleClosed {
		t.Fatalf("%d connections closed for want of idle room, want 0 (stats %+v)", st.MaxIdleClosed-before.MaxIdleClosed, st)
	}
}

func TestEnsureSchema(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "ALTER TABLE "+s.table+" DROP INDEX "+claimIndex); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err == nil || !strings.Contains(err.Error(), "index outbox_claim is missing") {
		t.Fatalf("CheckSchema of a table without the claim index = %v", err)
	}
}

// The key index is checked too, and a table whose key index has the earlier column order
// (msg_key, status, seq) gets an error that gives the statement rebuilding it, which works.
func TestCheckSchemaKeyIndex(t *testing.T) {
	ctx := context.Background()
	s := testStore(t)
	if _, err := s.DB().ExecContext(ctx, "ALTER TABLE "+s.table+" DROP INDEX "+keyIndex+", ADD INDEX "+keyIndex+" (msg_key, status, seq)"); err != nil {
		t.Fatal(err)
	}
	err := s.CheckSchema(ctx)
	if err == nil || !strings.Contains(err.Error(), "index outbox_key is on (msg_key, status, seq), want (status, msg_key, seq)") {
		t.Fatalf("CheckSchema with the earlier key index = %v", err)
	}
	if err := s.EnsureSchema(ctx); err == nil {
		t.Fatal("EnsureSchema accepted the earlier key index")
	}
	fix := err.Error()[strings.Index(err.Error(), "fix with ")+len("fix with "):]
	if _, err := s.DB().ExecContext(ctx, fix); err != nil {
		t.Fatalf("the fix %q: %v", fix, err)
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
	if _, err := s.DB().ExecContext(ctx, "ALTER TABLE "+s.table+" DROP INDEX "+keyIndex); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); err == nil || !strings.Contains(err.Error(), "index outbox_key is missing") {
		t.Fatalf("CheckSchema without the key index = %v", err)
	}
}
