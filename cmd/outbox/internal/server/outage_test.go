package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/outboxtest"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// waitUntil polls cond every 10ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func getJSON(t *testing.T, url string) (int, Health) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("healthz JSON: %v", err)
	}
	return resp.StatusCode, h
}

// A relay whose transport is unavailable is unhealthy, says since when and why, and the metrics
// show it; once the transport is back, both recover.
func TestHealthAndMetricsShowATransportOutage(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	if err := store.Add(ctx, outboxtest.NewMessages(20, "ORDER_PLACED", "")...); err != nil {
		t.Fatal(err)
	}
	tr := memory.New()
	tr.FailAll(outbox.Unavailable(errors.New("memory: broker down for maintenance")))
	relay, err := outbox.NewRelay(store, tr, outbox.Config{PollInterval: 20 * time.Millisecond, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewRelayCollector(relay.Stats))
	srv, err := Start("127.0.0.1:0", Config{
		Running:  func() bool { return true },
		Ping:     func(context.Context) error { return nil },
		Stats:    relay.Stats,
		Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(ctx) }()
	base := "http://" + srv.Addr()
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = relay.Stop(ctx) }()

	if !waitUntil(10*time.Second, func() bool { return !relay.Stats().TransportDownSince.IsZero() }) {
		t.Fatalf("the relay never saw the transport down: %+v", relay.Stats())
	}
	code, body := get(t, base+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "transport unavailable since ") ||
		!strings.Contains(body, "memory: broker down for maintenance") {
		t.Errorf("healthz while the transport is down: %d %q, want 503 transport unavailable since … and the error", code, body)
	}
	code, h := getJSON(t, base+"/healthz")
	if code != http.StatusServiceUnavailable || h.OK || !h.Running || !h.StoreOK || h.TransportDownSince == nil ||
		!h.TransportDownSince.Equal(relay.Stats().TransportDownSince) || h.TransportError != relay.Stats().TransportError {
		t.Errorf("healthz JSON while the transport is down: %d %+v", code, h)
	}
	if !waitUntil(10*time.Second, func() bool { return relay.Stats().Released > 0 }) {
		t.Fatalf("nothing was released during the outage: %+v", relay.Stats())
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{"outbox_relay_transport_up 0", "outbox_relay_failed_total 0", "outbox_relay_stale_total 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics during the outage lack %q:\n%s", want, metrics)
		}
	}
	if strings.Contains(metrics, "outbox_relay_released_total 0\n") || strings.Contains(metrics, "outbox_relay_transport_down_seconds 0\n") {
		t.Errorf("metrics during the outage show nothing released or no downtime:\n%s", metrics)
	}

	tr.Heal()
	if !waitUntil(10*time.Second, func() bool { code, _ := get(t, base+"/healthz"); return code == http.StatusOK }) {
		t.Fatalf("healthz never recovered after the transport came back: %+v", relay.Stats())
	}
	if code, h := getJSON(t, base+"/healthz"); code != http.StatusOK || !h.OK || h.TransportDownSince != nil || h.TransportError != "" {
		t.Errorf("healthz JSON once the transport is back: %d %+v", code, h)
	}
	_, metrics = get(t, base+"/metrics")
	for _, want := range []string{"outbox_relay_transport_up 1", "outbox_relay_transport_down_seconds 0\n"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics after the outage lack %q:\n%s", want, metrics)
		}
	}
}
