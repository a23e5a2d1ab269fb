package postgres

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/txoutbox/outbox"
)

// WALConfig switches a Store to logical-replication (WAL) mode: Add, AddSQL and Execute write
// each message into the WAL with pg_logical_emit_message inside the caller's transaction (no
// row, so no claim updates, deletes or vacuum), and the relay streams the messages from a
// logical replication slot in commit order. A message whose publish fails is written to the
// outbox table ("spilled"), where it is retried, dead-lettered and inspected as in table mode.
// The zero value of every field means its documented default. See doc/wal.md for the server
// settings this needs.
type WALConfig struct {
	// Slot is the logical replication slot (pgoutput) the relay reads. Only one connection can
	// read a slot at a time: of several relays, one streams and the others stand by, taking the
	// slot over when its reader dies. Default "outbox_<schema>_<table>" in lower case, shortened
	// with a hash past 63 bytes.
	Slot string
	// Publication is the (empty) publication pgoutput is started with; it carries no tables,
	// only the messages. Default: Slot's name.
	Publication string
	// ReplicationURL is the connection string of the replication connection. It must reach
	// PostgreSQL itself (PgBouncer does not pass replication connections) as a role with the
	// REPLICATION attribute. Default: the pool's connection settings.
	ReplicationURL string
	// MaxBuffered bounds the messages the reader holds that are streamed but not yet settled,
	// with those of a transaction it is still receiving; past it the reader stops reading until
	// the relay catches up, and a transaction that does not fit is written to the table as it
	// is decoded. Default 20000.
	MaxBuffered int
	// MaxBufferedBytes bounds the same messages in bytes (payload, result, headers, ID, type and
	// key), the same way. Default DefaultWALMaxBufferedBytes (64 MiB).
	MaxBufferedBytes int64
	// StatusInterval is how often the reader reports to the server how far it has settled (the
	// slot's confirmed position, which lets the server recycle WAL). A crash streams again what
	// was published since the last report. Default 1s.
	StatusInterval time.Duration
	// HeartbeatInterval is how often the reader writes a heartbeat message while it has seen
	// nothing, so the slot keeps advancing on a database whose other writes never reach it.
	// Default 10s.
	HeartbeatInterval time.Duration
	// TakeoverInterval is how often a standby tries to take the slot. Default 1s.
	TakeoverInterval time.Duration
	// LagAlarmBytes is the slot lag (WAL bytes written since the slot's confirmed position)
	// past which SlotStatus reports an alarm, the CLI's /healthz fails and `outbox status`
	// warns. Default 1 GiB.
	LagAlarmBytes int64
}

// DefaultWALMaxBufferedBytes is WALConfig.MaxBufferedBytes's default.
const DefaultWALMaxBufferedBytes = 64 << 20

// slotName matches PostgreSQL's rule for replication slot names.
var slotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func (w WALConfig) withDefaults(schema, table string) WALConfig {
	if w.Slot == "" {
		w.Slot = defaultSlot(schema, table)
	}
	if w.Publication == "" {
		w.Publication = w.Slot
	}
	if w.MaxBuffered == 0 {
		w.MaxBuffered = 20000
	}
	if w.MaxBufferedBytes == 0 {
		w.MaxBufferedBytes = DefaultWALMaxBufferedBytes
	}
	if w.StatusInterval == 0 {
		w.StatusInterval = time.Second
	}
	if w.HeartbeatInterval == 0 {
		w.HeartbeatInterval = 10 * time.Second
	}
	if w.TakeoverInterval == 0 {
		w.TakeoverInterval = time.Second
	}
	if w.LagAlarmBytes == 0 {
		w.LagAlarmBytes = 1 << 30
	}
	return w
}

// defaultSlot derives the slot's name from the table: lower case (slot names allow no upper
// case), hashed when too long or when lowering it changed it, so two tables never share a slot.
func defaultSlot(schema, table string) string {
	name := "outbox_" + schema + "_" + table
	if lower := strings.ToLower(name); lower == name && len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(schema + "." + table))
	short := strings.ToLower("outbox_" + table)
	if len(short) > 46 {
		short = short[:46]
	}
	return short + "_" + hex.EncodeToString(sum[:8])
}

func (w WALConfig) validate() error {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "postgres", Field: "WAL." + field, Problem: problem}
	}
	switch {
	case w.Slot != "" && !slotName.MatchString(w.Slot):
		return bad("Slot", fmt.Sprintf("%q is not a replication slot name (1 to 63 of a-z, 0-9, _)", w.Slot))
	case w.Publication != "" && !slotName.MatchString(w.Publication):
		return bad("Publication", fmt.Sprintf("%q must be 1 to 63 of a-z, 0-9, _", w.Publication))
	case w.MaxBuffered < 0:
		return bad("MaxBuffered", "is negative")
	case w.MaxBufferedBytes < 0:
		return bad("MaxBufferedBytes", "is negative")
	case w.MaxBufferedBytes > 0 && w.MaxBufferedBytes < 1<<20:
		return bad("MaxBufferedBytes", "is under 1 MiB (one message may be up to 256 KiB)")
	case w.StatusInterval < 0:
		return bad("StatusInterval", "is negative")
	case w.HeartbeatInterval < 0:
		return bad("HeartbeatInterval", "is negative")
	case w.TakeoverInterval < 0:
		return bad("TakeoverInterval", "is negative")
	case w.LagAlarmBytes < 0:
		return bad("LagAlarmBytes", "is negative")
	}
	if w.ReplicationURL != "" {
		if _, err := pgconn.ParseConfig(w.ReplicationURL); err != nil {
			return bad("ReplicationURL", "is not a valid PostgreSQL connection string")
		}
	}
	return nil
}

// walPrefix is the prefix of this table's messages in the WAL, so several outboxes (and other
// users of logical messages) can share a database and a slot sees only its own.
func walPrefix(schema, table string) string { return "outbox:" + schema + "." + table }

// walHeartbeatPrefix marks the reader's heartbeats, which carry no message.
func walHeartbeatPrefix(schema, table string) string {
	return "outbox-heartbeat:" + schema + "." + table
}
