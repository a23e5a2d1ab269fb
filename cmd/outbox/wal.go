package main

import (
	"context"
	"fmt"

	"github.com/txoutbox/outbox/cmd/outbox/internal/server"
	"github.com/txoutbox/outbox/store/postgres"
)

// The WAL mode's replication slot as the commands show it: outbox status, the relay's /healthz
// and /metrics. Each decides from the same postgres.SlotStatus, so they never disagree on
// whether the slot is in trouble.

// slotReport is the slot in `outbox status --json`.
type slotReport struct {
	Name      string `json:"name"`
	Exists    bool   `json:"exists"`
	Active    bool   `json:"active"`
	ActivePID int    `json:"active_pid,omitempty"`
	// WALStatus is the server's wal_status: reserved, extended, unreserved or lost.
	WALStatus     string `json:"wal_status,omitempty"`
	ConfirmedLSN  string `json:"confirmed_lsn,omitempty"`
	LagBytes      int64  `json:"lag_bytes"`
	RetainedBytes int64  `json:"retained_bytes"`
	Alarm         bool   `json:"alarm"`
	// AlarmReason says why Alarm is set.
	AlarmReason string `json:"alarm_reason,omitempty"`
}

func newSlotReport(st postgres.SlotStatus) *slotReport {
	return &slotReport{
		Name: st.Slot, Exists: st.Exists, Active: st.Active, ActivePID: st.ActivePID, WALStatus: st.WALStatus,
		ConfirmedLSN: st.ConfirmedLSN, LagBytes: st.LagBytes, RetainedBytes: st.RetainedBytes,
		Alarm: st.Alarm, AlarmReason: slotAlarm(st),
	}
}

// slotAlarm says why the store raised its alarm on the slot, or "" when it did not.
func slotAlarm(st postgres.SlotStatus) string {
	switch {
	case !st.Exists:
		return fmt.Sprintf("replication slot %s does not exist: WAL-mode writes fail until outbox migrate creates it", st.Slot)
	case st.WALStatus == "lost":
		return fmt.Sprintf("replication slot %s lost WAL it needed (past max_slot_wal_keep_size): messages written meanwhile are lost; recreate it (outbox migrate --drop-slot, then outbox migrate)", st.Slot)
	case st.Alarm:
		return fmt.Sprintf("replication slot %s lags %s of WAL, past --wal-lag-alarm (OUTBOX_WAL_LAG_ALARM)", st.Slot, bytesText(st.LagBytes))
	}
	return ""
}

// slotHealth reads the slot for /healthz and /metrics. Besides the store's alarm, a slot that
// nobody reads while this relay's reader keeps failing is a problem: nothing is delivered. A
// standby (the slot read by another relay) is healthy. scrub removes the connection strings'
// secrets from the reader's error.
func slotHealth(store *postgres.Store, scrub func(string) string) func(ctx context.Context) (server.SlotHealth, error) {
	return func(ctx context.Context) (server.SlotHealth, error) {
		st, err := store.SlotStatus(ctx)
		if err != nil {
			return server.SlotHealth{Name: st.Slot}, err
		}
		h := server.SlotHealth{
			Name: st.Slot, Exists: st.Exists, Active: st.Active, Holding: st.Holding, WALStatus: st.WALStatus,
			LagBytes: st.LagBytes, RetainedBytes: st.RetainedBytes, LagSeconds: st.Lag.Seconds(), Buffered: st.Buffered,
			Alarm: st.Alarm, Problem: slotAlarm(st),
		}
		if h.Problem == "" && !st.Holding && !st.Active && st.LastError != "" {
			h.Problem = fmt.Sprintf("no relay reads replication slot %s, and this one cannot: %s", st.Slot, scrub(st.LastError))
		}
		return h, nil
	}
}

// bytesText writes a byte count for people: 512 B, 1.5 KiB, 3.2 GiB.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
