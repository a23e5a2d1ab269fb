package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/server"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/store/postgres"
)

// The WAL mode's commands against the real PostgreSQL (wal_level=logical): each test has a
// schema of its own, hence a slot of its own (outbox_<schema>_outbox), dropped when it ends.

// walHarness is a schema in WAL mode, the binary's environment for it, and a store that writes
// into it (it never reads the slot: only the relays do).
type walHarness struct {
	t       *testing.T
	ctx     context.Context
	schema  string
	slot    string
	bin     string
	environ []string
	admin   *pgxpool.Pool
	writer  *postgres.Store
}

func newWALHarness(t *testing.T) *walHarness {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs it against PostgreSQL in WAL mode")
	}
	setup, cancelSetup := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelSetup()
	schema := pgSchema(t, setup)
	admin, err := pgxpool.New(setup, postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	var level string
	if err := admin.QueryRow(setup, "SHOW wal_level").Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		outboxtest.NeedService(t, "PostgreSQL with wal_level = logical (scripts/services/postgres sets it)", errors.New("wal_level is "+level))
	}
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	h := &walHarness{t: t, ctx: ctx, schema: schema, slot: "outbox_" + schema + "_outbox", bin: bin, admin: admin}
	// Registered before anything can create the slot, so it runs after every relay is gone
	// (cleanups run last first).
	t.Cleanup(h.dropSlot)
	h.environ = append(os.Environ(),
		"OUTBOX_STORE="+postgresURL(),
		"OUTBOX_SCHEMA="+schema,
		"OUTBOX_POSTGRES_MODE=wal",
		"OUTBOX_TRANSPORT=memory",
	)
	if code, out := outboxCmd(t, bin, h.environ, "migrate"); code != 0 || !strings.Contains(out, "replication slot "+h.slot) {
		t.Fatalf("migrate: exit %d: %s", code, out)
	}
	writer, err := postgres.New(ctx, postgres.Config{URL: postgresURL(), Schema: schema, WAL: &postgres.WALConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = writer.Close() })
	h.writer = writer
	return h
}

// dropSlot drops the test's slot and publication once no connection reads the slot: the server
// process of a killed or stopped relay's reader may take a moment to exit.
func (h *walHarness) dropSlot() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		_, err := h.admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", h.slot)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			h.t.Errorf("drop slot %s: %v", h.slot, err)
			return
		}
		time.Sleep(50 * time.Millisecond) // the walsender exits on its own; nothing to wait on
	}
	if _, err := h.admin.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{h.slot}.Sanitize()); err != nil {
		h.t.Errorf("drop publication %s: %v", h.slot, err)
	}
}

// write commits n events in one transaction and returns their IDs.
func (h *walHarness) write(n int) []string {
	h.t.Helper()
	msgs := make([]*outbox.Message, n)
	ids := make([]string, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "ORDER_PLACED", Key: fmt.Sprintf("order-%d", i%3), Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	if err := pgx.BeginFunc(h.ctx, h.writer.Pool(), func(tx pgx.Tx) error { return h.writer.Add(h.ctx, tx, msgs...) }); err != nil {
		h.t.Fatal(err)
	}
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// status runs `outbox status --json` and returns its slot.
func (h *walHarness) status() slotReport {
	h.t.Helper()
	code, out := outboxCmd(h.t, h.bin, h.environ, "status", "--json")
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || r.Slot == nil {
		h.t.Fatalf("status --json: exit %d, %v: %s", code, err, out)
	}
	return *r.Slot
}

// slotActive reads the server's view of the slot.
func (h *walHarness) slotActive() (exists, active bool) {
	h.t.Helper()
	err := h.admin.QueryRow(h.ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1", h.slot).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return true, active
}

// health reads a relay's /healthz as JSON.
func health(t *testing.T, p *relayProcess) (int, server.Health) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/healthz", nil)
	req.Header.Set("Accept", "application/json")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	defer resp.Body.Close()
	var h server.Health
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &h); err != nil || h.Slot == nil {
		t.Fatalf("/healthz %d: %v: %s", resp.StatusCode, err, body)
	}
	return resp.StatusCode, h
}

// printed returns the IDs of the envelopes the relays printed (memory transport).
func printed(t *testing.T, relays ...*relayProcess) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range relays {
		for _, line := range strings.Split(p.stdout.String(), "\n") {
			if line == "" {
				continue
			}
			m, err := backend.DecodeEnvelope([]byte(line))
			if err != nil {
				continue // a line still being written
			}
			seen[m.ID] = true
		}
	}
	return seen
}

// waitUntil polls cond every 50ms until it holds or timeout passes, and reports whether it held:
// the relays are other processes, with nothing to wait on but their output.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func all(seen map[string]bool, ids []string) bool {
	for _, id := range ids {
		if !seen[id] {
			return false
		}
	}
	return true
}

// TestWALMigrateStatusDropSlot: migrate creates the table, publication and slot; --print-sql
// shows their SQL; status shows the slot; --drop-slot removes it (and refuses outside WAL mode);
// status then raises the alarm of a missing slot.
func TestWALMigrateStatusDropSlot(t *testing.T) {
	h := newWALHarness(t)
	if exists, active := h.slotActive(); !exists || active {
		t.Fatalf("after migrate: slot exists %v, active %v; want an idle slot", exists, active)
	}
	var pub bool
	if err := h.admin.QueryRow(h.ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", h.slot).Scan(&pub); err != nil || !pub {
		t.Fatalf("publication %s after migrate: %v, %v", h.slot, pub, err)
	}
	// Idempotent, like table mode.
	if code, out := outboxCmd(t, h.bin, h.environ, "migrate"); code != 0 {
		t.Fatalf("second migrate: exit %d: %s", code, out)
	}
	code, out := outboxCmd(t, h.bin, h.environ, "migrate", "--print-sql")
	for _, want := range []string{`CREATE TABLE IF NOT EXISTS "` + h.schema + `"."outbox"`, `CREATE PUBLICATION "` + h.slot + `"`, "pg_create_logical_replication_slot('" + h.slot + "', 'pgoutput')"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("migrate --print-sql: exit %d, lacks %q:\n%s", code, want, out)
		}
	}

	h.write(5)
	s := h.status()
	if !s.Exists || s.Active || s.Name != h.slot || s.WALStatus == "" || s.LagBytes <= 0 || s.RetainedBytes < s.LagBytes || s.Alarm {
		t.Errorf("status of a slot holding 5 unread events: %+v", s)
	}
	code, text := outboxCmd(t, h.bin, h.environ, "status")
	for _, want := range []string{"slot ", h.slot + " (exists, read by no relay)", "slot lag", "retained WAL", "wal_status reserved", "slot alarm      none"} {
		if code != 0 || !strings.Contains(text, want) {
			t.Errorf("status: exit %d, lacks %q:\n%s", code, want, text)
		}
	}

	tableMode := append(h.environ, "OUTBOX_POSTGRES_MODE=table")
	if code, _ := outboxCmd(t, h.bin, tableMode, "migrate", "--drop-slot"); code != 2 {
		t.Errorf("migrate --drop-slot in table mode: exit %d, want 2", code)
	}
	if exists, _ := h.slotActive(); !exists {
		t.Fatal("migrate --drop-slot in table mode dropped the slot")
	}
	if code, out := outboxCmd(t, h.bin, h.environ, "migrate", "--drop-slot"); code != 0 || !strings.Contains(out, "dropped replication slot "+h.slot) {
		t.Fatalf("migrate --drop-slot: exit %d: %s", code, out)
	}
	if exists, _ := h.slotActive(); exists {
		t.Fatal("the slot is still there after migrate --drop-slot")
	}
	if err := h.admin.QueryRow(h.ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", h.slot).Scan(&pub); err != nil || pub {
		t.Fatalf("publication %s after --drop-slot: %v, %v", h.slot, pub, err)
	}
	if s := h.status(); s.Exists || !s.Alarm || !strings.Contains(s.AlarmReason, "does not exist") {
		t.Errorf("status without the slot: %+v, want the alarm of a missing slot", s)
	}
	// Dropping again is fine: nothing to do.
	if code, out := outboxCmd(t, h.bin, h.environ, "migrate", "--drop-slot"); code != 0 {
		t.Errorf("second migrate --drop-slot: exit %d: %s", code, out)
	}
}

// TestWALRelayStandbyTakesOver: two relays on one slot: one holds it, the other stands by, both
// healthy; the events arrive; /metrics and status show the slot; --drop-slot refuses while it is
// read; the holder is killed and the standby takes the slot and delivers what follows.
func TestWALRelayStandbyTakesOver(t *testing.T) {
	h := newWALHarness(t)
	first := startRelay(t, h.bin, h.environ)
	second := startRelay(t, h.bin, h.environ)
	relays := []*relayProcess{first, second}

	var holder, standby *relayProcess
	if !waitUntil(20*time.Second, func() bool {
		holder, standby = nil, nil
		for i, p := range relays {
			code, hl := health(t, p)
			if code != http.StatusOK {
				return false
			}
			if hl.Slot.Holding {
				holder, standby = p, relays[1-i]
			}
		}
		return holder != nil
	}) {
		t.Fatalf("no relay came to hold the slot with both healthy:\n%s\n%s", first.logs.String(), second.logs.String())
	}
	if code, hl := health(t, standby); code != http.StatusOK || hl.Slot.Holding || !hl.Slot.Active || hl.Slot.Problem != "" {
		t.Fatalf("standby's /healthz: %d %+v, want 200 from a relay not holding an active slot", code, *hl.Slot)
	}

	ids := h.write(50)
	if !waitUntil(30*time.Second, func() bool { return all(printed(t, relays...), ids) }) {
		t.Fatalf("%d of %d events printed:\n%s", len(printed(t, relays...)), len(ids), holder.logs.String())
	}
	if got := printed(t, standby); len(got) != 0 {
		t.Errorf("the standby published %d events", len(got))
	}
	code, body := httpGet(t, "http://"+holder.addr+"/metrics")
	for _, want := range []string{
		`outbox_wal_slot_holding{slot="` + h.slot + `"} 1`, `outbox_wal_slot_up{slot="` + h.slot + `"} 1`,
		`outbox_wal_slot_lag_bytes{slot="` + h.slot + `"} `, `outbox_wal_slot_retained_bytes{slot="` + h.slot + `"} `,
		`outbox_wal_lag_seconds{slot="` + h.slot + `"} `, `outbox_wal_slot_alarm{slot="` + h.slot + `"} 0`,
	} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("holder's /metrics (%d) lacks %q", code, want)
		}
	}
	if _, body := httpGet(t, "http://"+standby.addr+"/metrics"); !strings.Contains(body, `outbox_wal_slot_holding{slot="`+h.slot+`"} 0`) {
		t.Errorf("standby's /metrics does not say it stands by")
	}
	if s := h.status(); !s.Exists || !s.Active || s.ActivePID == 0 || s.Alarm {
		t.Errorf("status with a relay reading the slot: %+v", s)
	}
	if code, _ := outboxCmd(t, h.bin, h.environ, "migrate", "--drop-slot"); code != 1 {
		t.Errorf("migrate --drop-slot while a relay reads the slot: exit %d, want 1", code)
	}
	if exists, _ := h.slotActive(); !exists {
		t.Fatal("migrate --drop-slot dropped a slot a relay reads")
	}

	// The holder dies without a word; the standby takes over.
	if err := holder.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	holder.wait(t)
	if !waitUntil(20*time.Second, func() bool {
		code, hl := health(t, standby)
		return code == http.StatusOK && hl.Slot.Holding
	}) {
		_, hl := health(t, standby)
		t.Fatalf("the standby did not take the slot over: %+v\n%s", *hl.Slot, standby.logs.String())
	}
	more := h.write(20)
	if !waitUntil(30*time.Second, func() bool { return all(printed(t, standby), more) }) {
		t.Fatalf("%d events printed by the new holder, want the %d written after the takeover:\n%s", len(printed(t, standby)), len(more), standby.logs.String())
	}
	if code := standby.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("relay exit %d after SIGTERM:\n%s", code, standby.logs.String())
	}
	if !waitUntil(10*time.Second, func() bool { _, active := h.slotActive(); return !active }) {
		t.Error("the slot is still read after both relays ended")
	}
}

// TestWALHealthzFailsOnLagAlarm: a slot lagging past --wal-lag-alarm makes /healthz answer 503
// with the reason, /metrics raise the alarm and status warn.
func TestWALHealthzFailsOnLagAlarm(t *testing.T) {
	h := newWALHarness(t)
	alarmed := append(h.environ, "OUTBOX_WAL_LAG_ALARM=4096")
	relay := startRelay(t, h.bin, alarmed)
	// WAL the slot does not stream (another prefix, outside a transaction): the slot's
	// confirmed position stays behind it until the relay's next heartbeat, seconds away; each
	// check writes more first, so a heartbeat in between cannot clear the alarm.
	behind := func() {
		if _, err := h.admin.Exec(h.ctx, "SELECT pg_logical_emit_message(false, 'outbox-cli-test-other', repeat('x', 65536))"); err != nil {
			t.Fatal(err)
		}
	}
	behind()
	var last server.Health
	if !waitUntil(10*time.Second, func() bool {
		code, hl := health(t, relay)
		last = hl
		return code == http.StatusServiceUnavailable
	}) {
		t.Fatalf("/healthz stayed healthy with the slot past its alarm: %+v", *last.Slot)
	}
	if !last.Slot.Alarm || !strings.Contains(last.Slot.Problem, "past --wal-lag-alarm") || last.Slot.LagBytes <= 4096 {
		t.Errorf("/healthz slot %+v, want the lag alarm", *last.Slot)
	}
	behind()
	code, body := httpGet(t, "http://"+relay.addr+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "replication slot "+h.slot+" lags") {
		t.Errorf("/healthz text: %d %q, want 503 with the reason", code, body)
	}
	behind()
	if code, out := outboxCmd(t, h.bin, alarmed, "status"); code != 0 || !strings.Contains(out, "ALARM: replication slot "+h.slot+" lags") {
		t.Errorf("status: exit %d, no alarm:\n%s", code, out)
	}
	if code := relay.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("relay exit %d after SIGTERM:\n%s", code, relay.logs.String())
	}
}

// TestWALHealthzFailsWhenNobodyReadsTheSlot: a relay whose replication connection cannot be
// made, with no other relay reading the slot, answers 503 with its reader's error (without the
// connection string's password), and status shows the slot read by no relay.
func TestWALHealthzFailsWhenNobodyReadsTheSlot(t *testing.T) {
	h := newWALHarness(t)
	// Nothing listens on port 1.
	broken := append(h.environ, "OUTBOX_WAL_REPLICATION_URL=postgres://root:pw-url@127.0.0.1:1/test?connect_timeout=2")
	relay := startRelay(t, h.bin, broken)
	var last server.Health
	if !waitUntil(20*time.Second, func() bool {
		code, hl := health(t, relay)
		last = hl
		return code == http.StatusServiceUnavailable
	}) {
		t.Fatalf("/healthz stayed healthy with no relay reading the slot: %+v\n%s", *last.Slot, relay.logs.String())
	}
	if last.Slot.Holding || last.Slot.Active || !strings.Contains(last.Slot.Problem, "no relay reads replication slot "+h.slot+", and this one cannot") {
		t.Errorf("/healthz slot %+v, want the reader's failure", *last.Slot)
	}
	code, body := httpGet(t, "http://"+relay.addr+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no relay reads replication slot") {
		t.Errorf("/healthz text: %d %q", code, body)
	}
	assertNoSecret(t, "/healthz", body)
	if s := h.status(); !s.Exists || s.Active || s.Alarm {
		t.Errorf("status: %+v, want an existing slot read by nobody, without the store's alarm", s)
	}
	if code := relay.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("relay exit %d after SIGTERM:\n%s", code, relay.logs.String())
	}
	assertNoSecret(t, "relay logs", relay.logs.String())
}
