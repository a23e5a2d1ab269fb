package mongo

import (
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The servers the integration tests use. A replica set (OUTBOX_TEST_MONGO_URI, unset by
// default: none can run on the CI machines) gets the whole suite; FerretDB, which
// scripts/services/ferretdb starts, gets the serial part.
const (
	mongoURIEnv    = "OUTBOX_TEST_MONGO_URI"
	ferretURIEnv   = "OUTBOX_TEST_FERRETDB_URI"
	ferretDefault  = "mongodb://127.0.0.1:27017/"
	testTimeout    = 60 * time.Second
	connectTimeout = 3 * time.Second
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// replicaSetURI returns OUTBOX_TEST_MONGO_URI or skips: no replica set can exist on the CI
// machines, so its absence is never a failure.
func replicaSetURI(t testing.TB) string {
	t.Helper()
	uri := outboxtest.ServiceAddr(mongoURIEnv, "")
	if uri == "" {
		t.Skipf("%s is unset: the tests that need a MongoDB replica set (transactions, concurrent claims, change streams) do not run; see store/mongo/README.md to start one", mongoURIEnv)
	}
	return uri
}

func ferretURI() string { return outboxtest.ServiceAddr(ferretURIEnv, ferretDefault) }

// testDatabase returns a database name unique to this test.
func testDatabase(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 30 {
		name = name[len(name)-30:]
	}
	return "t_" + strings.ToLower(rand.Text()[:8]) + "_" + name
}

// openStore connects a Store to uri over a fresh database, with its indexes, and drops the
// database when the test ends. A server that cannot be reached is handled by need.
func openStore(t testing.TB, uri string, need func(error), cfg Config) *Store {
	t.Helper()
	cfg.URI = URI(uri)
	if cfg.Database == "" {
		cfg.Database = testDatabase(t)
	}
	cfg.ConnectTimeout = connectTimeout
	s, err := New(testCtx(t), cfg)
	if err != nil {
		need(err)
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.client.Database(cfg.Database).Drop(ctx); err != nil {
			t.Errorf("drop test database: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if err := s.EnsureSchema(testCtx(t)); err != nil {
		t.Fatalf("ensure schema: %v", err)
	}
	return s
}

func openFerret(t testing.TB, cfg Config) *Store {
	return openStore(t, ferretURI(), func(err error) { outboxtest.NeedService(t, "FerretDB", err) }, cfg)
}

func openReplicaSet(t testing.TB, cfg Config) *Store {
	uri := replicaSetURI(t)
	return openStore(t, uri, func(err error) { t.Fatalf("%s is set but the server is unreachable: %v", mongoURIEnv, err) }, cfg)
}

// reopen returns another Store over s's collection with its own client, as a second relay
// process would have.
func reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	cfg := s.cfg
	cfg.Client = nil
	other, err := New(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = other.Close() })
	return other
}

// addCommitted writes msgs with Add inside session.WithTransaction, the way a service would.
func addCommitted(ctx context.Context, s *Store, msgs ...*outbox.Message) error {
	sess, err := s.Client().StartSession()
	if err != nil {
		return err
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		return nil, s.Add(ctx, msgs...)
	})
	return err
}

// errRollback makes addRolledBack's transaction abort.
var errRollback = &rollbackError{}

type rollbackError struct{}

func (*rollbackError) Error() string { return "roll back on purpose" }

// addRolledBack writes msgs with Add in a transaction that then fails and aborts.
func addRolledBack(ctx context.Context, s *Store, msgs ...*outbox.Message) error {
	sess, err := s.Client().StartSession()
	if err != nil {
		return err
	}
	defer sess.EndSession(context.WithoutCancel(ctx))
	_, err = sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		if err := s.Add(ctx, msgs...); err != nil {
			return nil, err
		}
		return nil, errRollback
	})
	if err == errRollback {
		return nil
	}
	return err
}

// serialStore makes the claims of the FerretDB runs wait for each other. FerretDB applies an
// update by reading each matching document and then rewriting it, so two claims racing there
// could both lease a message: the atomicity a real server gives is tested on a replica set, and
// the FerretDB runs test everything else with one claim at a time. Acks and nacks need no such
// care: they only touch messages their caller holds, which no claim matches.
type serialStore struct {
	*Store
	mu *sync.Mutex
}

func (s serialStore) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Store.Claim(ctx, req)
}
