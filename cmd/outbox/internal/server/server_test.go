package server

import (
	"context"
	"errors"
	memstore "github.com/txoutbox/outbox/store/memory"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthAndMetrics(t *testing.T) {
	var running atomic.Bool
	var pingErr atomic.Pointer[error]
	store := memstore.New()
	if err := store.Add(context.Background(), outboxtest.NewMessages(3, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	stats := outbox.Stats{Published: 7, Dead: 1, LastLag: 1500 * time.Millisecond}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewRelayCollector(func() outbox.Stats { return stats }), NewStoreCollector(store, time.Second))
	srv, err := Start("127.0.0.1:0", Config{
		Running:  running.Load,
		Registry: reg,
		Ping: func(context.Context) error {
			if p := pingErr.Load(); p != nil {
				return *p
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	base := "http://" + srv.Addr()

	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("healthz before start: %d %q, want 503 not running", code, body)
	}
	running.Store(true)
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz while running: %d %q, want 200 ok", code, body)
	}
	down := errors.New("connection refused by secret-host")
	pingErr.Store(&down)
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || strings.Contains(body, "secret-host") {
		t.Errorf("healthz with the store down: %d %q, want 503 without the driver's error", code, body)
	}

	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		"outbox_relay_published_total 7",
		"outbox_relay_dead_total 1",
		"outbox_relay_lag_seconds 1.5",
		`outbox_messages{status="pending"} 3`,
		`outbox_messages{status="dead"} 0`,
		"outbox_store_up 1",
		"outbox_oldest_pending_age_seconds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// failingInspector reports every count as failed.
type failingInspector struct{ outbox.Inspector }

func (failingInspector) Counts(context.Context) (outbox.Counts, error) {
	return outbox.Counts{}, errors.New("down")
}

func TestStoreCollectorReportsTheStoreDown(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStoreCollector(failingInspector{}, time.Second))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 1 || families[0].GetName() != "outbox_store_up" || families[0].GetMetric()[0].GetGauge().GetValue() != 0 {
		t.Fatalf("gathered %v, want only outbox_store_up 0", families)
	}
}

func TestStartFailsOnABusyAddress(t *testing.T) {
	cfg := Config{Running: func() bool { return true }, Ping: func(context.Context) error { return nil }, Registry: prometheus.NewRegistry()}
	first, err := Start("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Shutdown(context.Background()) }()
	if second, err := Start(first.Addr(), cfg); err == nil {
		_ = second.Shutdown(context.Background())
		t.Fatal("a second server started on a busy address")
	}
}

// In WAL mode /healthz follows the slot: a standby is healthy, a slot with a problem or one that
// cannot be read is not; /metrics has the slot's gauges.
func TestHealthFollowsTheSlot(t *testing.T) {
	var slot atomic.Pointer[SlotHealth]
	var slotErr atomic.Pointer[error]
	read := func(context.Context) (SlotHealth, error) {
		if p := slotErr.Load(); p != nil {
			return SlotHealth{Name: "s"}, *p
		}
		return *slot.Load(), nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewSlotCollector(read, time.Second))
	srv, err := Start("127.0.0.1:0", Config{Running: func() bool { return true }, Ping: func(context.Context) error { return nil }, Registry: reg, Slot: read})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	base := "http://" + srv.Addr()

	slot.Store(&SlotHealth{Name: "s", Exists: true, Active: true, Holding: false, LagBytes: 100})
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz of a standby: %d %q, want 200 ok", code, body)
	}
	slot.Store(&SlotHealth{Name: "s", Exists: true, Active: true, Holding: true, LagBytes: 1 << 31, RetainedBytes: 1 << 32, LagSeconds: 2.5, Alarm: true, Problem: "replication slot s lags 2.0 GiB"})
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || body != "replication slot s lags 2.0 GiB\n" {
		t.Errorf("healthz with a lagging slot: %d %q, want 503 with the reason", code, body)
	}
	code, body := get(t, base+"/metrics")
	for _, want := range []string{
		`outbox_wal_slot_up{slot="s"} 1`, `outbox_wal_slot_holding{slot="s"} 1`, `outbox_wal_slot_alarm{slot="s"} 1`,
		`outbox_wal_slot_lag_bytes{slot="s"} 2.147483648e+09`, `outbox_wal_slot_retained_bytes{slot="s"} 4.294967296e+09`,
		`outbox_wal_lag_seconds{slot="s"} 2.5`,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	down := errors.New("connection refused by secret-host")
	slotErr.Store(&down)
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "slot unreadable") || strings.Contains(body, "secret-host") {
		t.Errorf("healthz with the slot unreadable: %d %q, want 503 without the driver's error", code, body)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, `outbox_wal_slot_up{slot="s"} 0`) {
		t.Errorf("metrics with the slot unreadable lack outbox_wal_slot_up 0:\n%s", body)
	}
}
