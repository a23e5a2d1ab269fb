package postgres

import "fmt"

// spillQuery writes streamed messages to the table in the caller's order (seq follows it), with
// their attempts, retry time on the database's clock, and dead state. ON CONFLICT: a message
// streamed again after a crash, before the slot moved past it, is already there.
func spillQuery(table string) string {
	return fmt.Sprintf(`INSERT INTO %s (id, type, key, payload, result, headers, created_at, attempts, available_at, status, last_error, dead_at)
SELECT u.id, u.type, u.key, u.payload::json, u.result::json, u.headers::json, u.created_at, u.attempts,
	now() + u.delay * interval '1 microsecond',
	CASE WHEN u.dead THEN 'dead' ELSE 'pending' END, u.last_error, CASE WHEN u.dead THEN now() END
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::int4[], $9::int8[], $10::bool[], $11::text[])
	WITH ORDINALITY AS u(id, type, key, payload, result, headers, created_at, attempts, delay, dead, last_error, n)
ORDER BY u.n
ON CONFLICT (id) DO NOTHING`, table)
}

// The WAL-mode writes emit the batch as one transactional logical decoding message. At most
// once per slotCheckInterval a write also checks that the slot exists and still has its WAL, and
// fails when it does not: a message no slot will read would be lost without a trace, so the
// statement raises an error and the transaction cannot commit (Execute sends COMMIT in the same
// round trip, so the error must come from the server). The error is current_setting's, for a
// setting named after the problem: a stable function, so it runs only when the CASE reaches it
// (an expression the planner could fold would raise even when the slot exists). The check reads
// every slot of the server, which costs a busy writer more than the message itself; between
// checks, writes emit without it. $1 prefix, $2 content, $3 slot.
const (
	walEmit        = `SELECT pg_logical_emit_message(true, $1::text, $2::bytea)`
	walEmitChecked = walEmit + `
WHERE (SELECT CASE WHEN count(*) = 1 THEN true ELSE current_setting(` + noSlotSetting + `)::bool END
	FROM pg_replication_slots WHERE slot_name = $3::text AND wal_status IS DISTINCT FROM 'lost')`
	// database/sql: the content as base64 text.
	walEmitText        = `SELECT pg_logical_emit_message(true, $1::text, decode($2::text, 'base64'))`
	walEmitTextChecked = walEmitText + `
WHERE (SELECT CASE WHEN count(*) = 1 THEN true ELSE current_setting(` + noSlotSetting + `)::bool END
	FROM pg_replication_slots WHERE slot_name = $3::text AND wal_status IS DISTINCT FROM 'lost')`
	noSlotSetting = `'outbox: replication slot ' || $3::text || ' does not exist or lost its WAL'`
)
