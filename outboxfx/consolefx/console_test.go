package consolefx_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/console"
	"github.com/txoutbox/outbox/outboxfx"
	"github.com/txoutbox/outbox/outboxfx/consolefx"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// backends supplies what a service provides itself: its store, logger and relay config (polling
// often, so a test need not wait a second for the first claim).
func backends(store *memstore.Store) fx.Option {
	return fx.Options(
		fx.Supply(fx.Annotate(store, fx.As(new(outbox.Store)))),
		fx.Supply(zap.NewNop(), outboxfx.Config{Relay: outbox.Config{PollInterval: 20 * time.Millisecond}}),
		fx.NopLogger,
	)
}

const consoleToken = "outboxfx-console-token-0123"

// seedDead writes n messages and makes them dead, as a relay does when their publish fails.
func seedDead(t *testing.T, store *memstore.Store, n int) []*outbox.Message {
	t.Helper()
	ctx := testCtx(t)
	msgs := outboxtest.NewMessages(n, "ORDER_PLACED", "order-1")
	if err := store.Add(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	claimed, err := store.Claim(ctx, outbox.ClaimRequest{Token: "seed", Limit: n, Lease: time.Minute})
	if err != nil || len(claimed) != n {
		t.Fatalf("claimed %d of %d: %v", len(claimed), n, err)
	}
	var failures []outbox.Failure
	for _, m := range claimed {
		failures = append(failures, outbox.Failure{ID: m.ID, Error: "broker said no", Dead: true})
	}
	if _, err := store.Nack(ctx, "seed", failures); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func consoleRequest(t *testing.T, method, url, bearer, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, v
}

// The console's own server starts and stops with the app; a requeue through it is published by
// the app's relay.
func TestConsoleServesBesideTheRelay(t *testing.T) {
	ctx := testCtx(t)
	store := memstore.New()
	broker := memory.New()
	msgs := seedDead(t, store, 2)
	var srv *consolefx.Server
	app := fxtest.New(t,
		backends(store),
		fx.Supply(fx.Annotate(broker, fx.As(new(outbox.Transport)))),
		outboxfx.Module,
		consolefx.Console(consolefx.Config{Addr: "127.0.0.1:0", Console: console.Config{Token: consoleToken}}),
		fx.Populate(&srv),
	)
	if srv.Addr() != "" {
		t.Fatalf("the console listens before the app starts: %s", srv.Addr())
	}
	app.RequireStart()
	base := "http://" + srv.Addr() + "/api/outboxes/" + consolefx.DefaultName
	if code, v := consoleRequest(t, "GET", base, "", ""); code != 200 || v["dead"] != 2.0 {
		t.Fatalf("GET %s: %d %v, want 2 dead", base, code, v)
	}
	if code, v := consoleRequest(t, "POST", base+"/dead/requeue", "", `{"all":true}`); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Fatalf("requeue without the token: %d %v", code, v)
	}
	if code, v := consoleRequest(t, "POST", base+"/dead/requeue", consoleToken, `{"all":true,"expect":2}`); code != 200 || v["requeued"] != 2.0 {
		t.Fatalf("requeue: %d %v", code, v)
	}
	if err := broker.WaitFor(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if got := broker.Received(); got[0].ID != msgs[0].ID && got[0].ID != msgs[1].ID {
		t.Fatalf("published %v, want the requeued messages", got)
	}
	addr := srv.Addr()
	app.RequireStop()
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatalf("the console still listens on %s after the app stopped", addr)
	}
}

// Without Addr the option provides the handler only, for the app's own mux.
func TestConsoleHandlerForTheAppsMux(t *testing.T) {
	store := memstore.New()
	seedDead(t, store, 1)
	var h consolefx.Handler
	app := fxtest.New(t,
		fx.Supply(fx.Annotate(store, fx.As(new(outbox.Store)))),
		fx.NopLogger,
		consolefx.Console(consolefx.Config{Console: console.Config{ReadOnly: true}}),
		fx.Populate(&h),
	)
	app.RequireStart()
	defer app.RequireStop()
	mux := http.NewServeMux()
	mux.Handle("/ops/outbox/", http.StripPrefix("/ops/outbox", h))
	ts := httptest.NewServer(mux)
	defer ts.Close()
	if code, v := consoleRequest(t, "GET", ts.URL+"/ops/outbox/api/outboxes/outbox", "", ""); code != 200 || v["dead"] != 1.0 {
		t.Fatalf("GET through the app's mux: %d %v", code, v)
	}
	if code, v := consoleRequest(t, "POST", ts.URL+"/ops/outbox/api/outboxes/outbox/dead/purge", consoleToken, `{"all":true}`); code != http.StatusForbidden {
		t.Fatalf("purge on a read-only console: %d %v, want 403", code, v)
	}
}

// A console config that could not run fails the app at construction, naming the field.
func TestConsoleBadConfigFailsTheApp(t *testing.T) {
	store := memstore.New()
	tests := []struct {
		name string
		cfg  consolefx.Config
		want string
	}{
		{"no token", consolefx.Config{Addr: "127.0.0.1:0"}, "Token"},
		{"beyond loopback without token", consolefx.Config{Addr: "0.0.0.0:8081", Console: console.Config{ReadOnly: true}}, `"0.0.0.0" is not a loopback address`},
		{"bad addr", consolefx.Config{Addr: "nowhere", Console: console.Config{ReadOnly: true}}, "Addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := fx.New(
				fx.Supply(fx.Annotate(store, fx.As(new(outbox.Store)))),
				fx.NopLogger,
				consolefx.Console(tt.cfg),
			)
			if err := app.Err(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("app error %v, want one naming %q", err, tt.want)
			}
		})
	}
}

// A busy address fails the app's start.
func TestConsoleBusyAddressFailsStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	app := fx.New(
		fx.Supply(fx.Annotate(memstore.New(), fx.As(new(outbox.Store)))),
		fx.NopLogger,
		consolefx.Console(consolefx.Config{Addr: ln.Addr().String(), Console: console.Config{ReadOnly: true}}),
	)
	if err := app.Start(testCtx(t)); err == nil || !strings.Contains(err.Error(), "console") {
		t.Fatalf("start on a busy address: %v, want the console's listen error", err)
	}
	_ = app.Stop(context.Background())
}
