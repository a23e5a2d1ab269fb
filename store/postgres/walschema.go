package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// WALSQL returns what EnsureSchema adds in WAL mode to SchemaSQL's table (which holds the
// spilled messages): the table where the reader keeps the position it confirmed (see
// walStream.persist), the publication pgoutput streams with, and the logical replication slot.
// The slot statement must run outside a transaction block that has written anything (a
// PostgreSQL rule for creating logical slots), by a role with the REPLICATION attribute. Run it
// before the first WAL-mode write: the WAL the slot holds starts when it is created.
func WALSQL(cfg Config) (string, error) {
	if cfg.WAL == nil {
		return "", errors.New("postgres: WAL SQL: the config is not in WAL mode (WAL is nil)")
	}
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	d := cfg.withDefaults()
	pt := positionTable(d.Schema, d.Table)
	return fmt.Sprintf("%s;\n%s;\nCREATE PUBLICATION %s;\nSELECT pg_create_logical_replication_slot('%s', 'pgoutput');\n",
		positionDDL(pt), positionUpgradeDDL(pt), pgx.Identifier{d.WAL.Publication}.Sanitize(), d.WAL.Slot), nil
}

// positionTable is the quoted name of the table of confirmed positions, next to the outbox.
func positionTable(schema, table string) string {
	return pgx.Identifier{schema, indexName(table, "wal")}.Sanitize()
}

// positionDDL creates the position table: per slot, the position the reader confirmed, and the
// transaction too large for the buffer that is being written to the table as it is decoded
// (tabled_tx, its commit position) with how many of its messages are there (tabled; see
// walStream.flush).
func positionDDL(table string) string {
	return "CREATE TABLE IF NOT EXISTS " + table + " (slot text PRIMARY KEY, confirmed pg_lsn NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), tabled_tx pg_lsn, tabled bigint NOT NULL DEFAULT 0)"
}

// positionUpgradeDDL adds the large transaction's columns to a position table created without them.
func positionUpgradeDDL(table string) string {
	return "ALTER TABLE " + table + " ADD COLUMN IF NOT EXISTS tabled_tx pg_lsn, ADD COLUMN IF NOT EXISTS tabled bigint NOT NULL DEFAULT 0"
}

// ensureWAL creates the position table, the publication and the slot when missing. Concurrent
// callers are fine: the table is created under EnsureSchema's lock, and the loser of a race for
// the publication or the slot gets "already exists", which is what it wanted. A slot created
// here starts afresh: a position kept for an earlier slot of the same name is forgotten.
func (s *Store) ensureWAL(ctx context.Context) error {
	w := s.wal.cfg
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(s.cfg.Schema, s.cfg.Table)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, positionDDL(s.wal.positions)); err != nil {
			return err
		}
		// ALTER TABLE locks the table out even when it changes nothing: only when needed.
		var has bool
		err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'tabled' AND NOT attisdropped)", s.wal.positions).Scan(&has)
		if err != nil || has {
			return err
		}
		_, err = tx.Exec(ctx, positionUpgradeDDL(s.wal.positions))
		return err
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", s.wal.positions, err)
	}
	var pub, slot bool
	err = s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $2)`, w.Publication, w.Slot).Scan(&pub, &slot)
	if err != nil {
		return err
	}
	if !pub {
		if _, err := s.pool.Exec(ctx, "CREATE PUBLICATION "+pgx.Identifier{w.Publication}.Sanitize()); err != nil && !alreadyExists(err) {
			return fmt.Errorf("create publication %q: %w", w.Publication, err)
		}
	}
	if !slot {
		if _, err := s.pool.Exec(ctx, "DELETE FROM "+s.wal.positions+" WHERE slot = $1", w.Slot); err != nil {
			return err
		}
		if _, err := s.pool.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", w.Slot); err != nil && !alreadyExists(err) {
			return fmt.Errorf("create replication slot %q: %w", w.Slot, err)
		}
	}
	return nil
}

func undefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}

func undefinedColumn(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42703"
}

func alreadyExists(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42710"
}

// DropSlot removes the WAL mode's replication slot and publication (`outbox migrate
// --drop-slot`). Do it when leaving WAL mode or removing a service: an abandoned slot keeps
// every WAL segment written after its position, until the disk fills (or, with
// max_slot_wal_keep_size, until the server invalidates it). It fails while a relay reads the
// slot. Messages written and not yet streamed are lost with the slot, so drain first.
func (s *Store) DropSlot(ctx context.Context) error {
	if s.wal == nil {
		return errors.New("postgres: drop slot: the store is not in WAL mode")
	}
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("postgres: drop slot: %w", err)
	}
	w := s.wal.cfg
	_, err := s.pool.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", w.Slot)
	if err != nil {
		return fmt.Errorf("postgres: drop slot %q: %w", w.Slot, err)
	}
	// The position table may be missing (created by EnsureSchema, not by every migration).
	if _, err := s.pool.Exec(ctx, "DELETE FROM "+s.wal.positions+" WHERE slot = $1", w.Slot); err != nil && !undefinedTable(err) {
		return fmt.Errorf("postgres: drop slot %q: forget its position: %w", w.Slot, err)
	}
	if _, err := s.pool.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{w.Publication}.Sanitize()); err != nil {
		return fmt.Errorf("postgres: drop publication %q: %w", w.Publication, err)
	}
	return nil
}

// SlotStatus is the state of the WAL mode's slot, as the server and this store's reader see it.
type SlotStatus struct {
	Slot string
	// Exists is false when the slot is missing: WAL-mode writes fail until it is created.
	Exists bool
	// Active: some connection reads the slot (this store's reader or another relay's).
	Active    bool
	ActivePID int
	// WALStatus is the server's wal_status: reserved, extended, unreserved or lost (the slot
	// lost WAL it needed, past max_slot_wal_keep_size: messages were lost).
	WALStatus string
	// ConfirmedLSN is how far the slot's reader confirmed.
	ConfirmedLSN string
	// LagBytes is the WAL written since ConfirmedLSN; RetainedBytes the WAL the slot keeps.
	LagBytes, RetainedBytes int64
	// Alarm: LagBytes is past WALConfig.LagAlarmBytes, the slot lost its WAL, or it is missing.
	Alarm bool

	// Holding: this store's reader holds the slot (the others stand by).
	Holding bool
	// HeldSince is when it took the slot.
	HeldSince time.Time
	// Buffered counts messages streamed and not yet settled by this store's relay.
	Buffered int
	// Lag is how long ago the oldest transaction this reader has not confirmed committed; zero
	// when it has confirmed everything it streamed, or does not hold the slot.
	Lag time.Duration
	// LastError is why this store's reader last failed to stream, if it does not hold the slot.
	LastError string
}

// SlotStatus reports on the slot (for metrics, `outbox status` and health checks).
func (s *Store) SlotStatus(ctx context.Context) (SlotStatus, error) {
	if s.wal == nil {
		return SlotStatus{}, errors.New("postgres: slot status: the store is not in WAL mode")
	}
	if err := s.checkOpen(); err != nil {
		return SlotStatus{}, fmt.Errorf("postgres: slot status: %w", err)
	}
	w := s.wal
	st := SlotStatus{Slot: w.cfg.Slot}
	var pid *int32
	var walStatus *string
	var confirmed *pglogrepl.LSN
	var lag, retained *int64
	err := s.pool.QueryRow(ctx, `SELECT active, active_pid, wal_status, confirmed_flush_lsn,
		(pg_current_wal_lsn() - confirmed_flush_lsn)::int8, (pg_current_wal_lsn() - restart_lsn)::int8
		FROM pg_replication_slots WHERE slot_name = $1`, w.cfg.Slot).Scan(&st.Active, &pid, &walStatus, &confirmed, &lag, &retained)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return SlotStatus{}, fmt.Errorf("postgres: slot status: %w", err)
	default:
		st.Exists = true
	}
	if pid != nil {
		st.ActivePID = int(*pid)
	}
	if walStatus != nil {
		st.WALStatus = *walStatus
	}
	if confirmed != nil {
		st.ConfirmedLSN = confirmed.String()
	}
	if lag != nil {
		st.LagBytes = *lag
	}
	if retained != nil {
		st.RetainedBytes = *retained
	}
	st.Alarm = !st.Exists || st.WALStatus == "lost" || st.LagBytes > w.cfg.LagAlarmBytes
	st.Holding = w.holding.Load()
	_, oldest, buffered := w.buf.position()
	st.Buffered = buffered
	w.mu.Lock()
	if st.Holding {
		st.HeldSince = w.heldSince
	}
	if w.err != nil && !st.Holding {
		st.LastError = w.err.Error()
	}
	w.mu.Unlock()
	if st.Holding && !oldest.IsZero() {
		st.Lag = max(time.Since(oldest), 0)
	}
	return st, nil
}
