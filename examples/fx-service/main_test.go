package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/memory"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	goleak.VerifyTestMain(m)
}

// testConfig returns the service's config over a schema of its own, dropped when the test ends.
func testConfig(t *testing.T) Config {
	t.Helper()
	url := outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgxpool.New(ctx, url)
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL at "+url, err)
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	schema := "example_fx_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		defer admin.Close()
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	// The queue is never reached: the test replaces the SQS transport, and building one sends
	// no request.
	return Config{PostgresURL: url, Schema: schema, Listen: "127.0.0.1:0", QueueURL: "unused", Region: "us-east-1"}
}

// testService is the service with the memory transport in place of SQS and a quiet logger.
func testService(cfg Config, broker *memory.Transport) fx.Option {
	return fx.Options(
		service(cfg),
		fx.Decorate(func(outbox.Transport) outbox.Transport { return broker }),
		fx.Decorate(func(*zap.Logger) *zap.Logger { return zap.NewNop() }),
	)
}

func TestWiring(t *testing.T) {
	cfg := Config{PostgresURL: "postgres://localhost/db", Schema: "public", Listen: "127.0.0.1:0", QueueURL: "unused"}
	if err := fx.ValidateApp(testService(cfg, memory.New())); err != nil {
		t.Fatal(err)
	}
}

func TestRequestPublishesItsEvent(t *testing.T) {
	broker := memory.New()
	var srv *Server
	app := fxtest.New(t, testService(testConfig(t), broker), fx.Populate(&srv))
	app.RequireStart()
	defer app.RequireStop()

	post := func(body string) (int, string) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Post("http://"+srv.Addr()+"/users", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := post(`{"name":"ada","email":"ada@example.com"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /users: %d %s", code, body)
	}
	var created struct {
		User
		EventID string `json:"event_id"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == 0 || created.EventID == "" {
		t.Fatalf("response %q: %v", body, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := broker.WaitFor(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got := broker.Received()[0]
	var result User
	if err := json.Unmarshal(got.Result, &result); err != nil {
		t.Fatal(err)
	}
	if got.ID != created.EventID || got.Type != "USER_CREATED" || result != created.User {
		t.Errorf("published %+v (result %s), want USER_CREATED %s with the user %+v", got, got.Result, created.EventID, created.User)
	}

	// A rejected write publishes nothing: the duplicate email rolls the event back with the row.
	if code, body := post(`{"name":"ada again","email":"ada@example.com"}`); code != http.StatusConflict {
		t.Errorf("duplicate user: %d %s, want 409", code, body)
	}
	if code, _ := post(`{"name":""}`); code != http.StatusBadRequest {
		t.Errorf("empty user: %d, want 400", code)
	}
	time.Sleep(300 * time.Millisecond) // a published ghost would show up well within this
	if n := broker.Len(); n != 1 {
		t.Errorf("%d messages published, want only the committed user's", n)
	}
}

func TestMissingEnvironment(t *testing.T) {
	_, err := ConfigFromEnv(func(string) string { return "" })
	if !isMissing(err) || !strings.Contains(err.Error(), "OUTBOX_POSTGRES_URL and OUTBOX_SQS_QUEUE_URL not set") {
		t.Fatalf("ConfigFromEnv without environment: %v", err)
	}
}
