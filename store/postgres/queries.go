package postgres

import "fmt"

// queries holds the SQL of one store, built once from its quoted table name. Every value travels
// as a parameter; only the validated, quoted identifier is pasted in. Parameters are plain
// scalars and text/uuid/timestamptz/bool arrays with explicit casts, so the statements work in
// pgx's simple protocol (PgBouncer) as well as with prepared statements.
type queries struct {
	add, addOne, addJSON    string
	claim, claimOrdered     string
	ack, nack               string
	counts, deleteDelivered string
	deadColumns, deadFrom   string
	requeueSet, purge       string
}

// returning is what a claim reads back, in the order scanMessage expects.
const returning = `o.seq, o.id::text, o.type, o.key, o.payload::text, o.result::text, o.headers::text, o.created_at, o.attempts`

func buildQueries(table string, keepDelivered bool) queries {
	var q queries

	// One statement, so one round trip whatever the batch size: the INSERT runs as a
	// data-modifying CTE (which always runs) and the NOTIFY it is paired with, when the last
	// parameter asks for one, only reaches listeners on commit. ORDER BY n keeps seq in the
	// caller's order.
	q.add = fmt.Sprintf(`WITH ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	SELECT u.id, u.type, u.key, u.payload::json, u.result::json, u.headers::json, u.created_at
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
		WITH ORDINALITY AS u(id, type, key, payload, result, headers, created_at, n)
	ORDER BY u.n
) SELECT pg_notify($8, '') WHERE $9::bool`, table)
	// The common single-message write skips unnest's array handling.
	q.addOne = fmt.Sprintf(`WITH ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	VALUES ($1::uuid, $2::text, $3::text, $4::text::json, $5::text::json, $6::text::json, $7::timestamptz)
) SELECT pg_notify($8, '') WHERE $9::bool`, table)

	// database/sql drivers disagree on how arrays are passed, so AddSQL sends the batch as one
	// JSON document, which every driver passes as text.
	q.addJSON = fmt.Sprintf(`WITH ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	SELECT r.id, r.type, r.key, r.payload::json, r.result::json, r.headers::json, r.created_at
	FROM ROWS FROM (json_to_recordset($1::json) AS (id uuid, type text, key text, payload text, result text, headers text, created_at timestamptz))
		WITH ORDINALITY AS r(id, type, key, payload, result, headers, created_at, n)
	ORDER BY r.n
) SELECT pg_notify($2, '') WHERE $3::bool`, table)

	// A claim is one statement: pick due rows oldest first from the pending index, skipping rows
	// another claimer has locked, and lease them. The lease expiry also becomes available_at, so
	// an expired lease makes the row due again without a second condition.
	claim := `UPDATE %[1]s AS o
SET lease_owner = $1, lease_until = now() + $2::float8 * interval '1 second', available_at = now() + $2::float8 * interval '1 second'
FROM (
	SELECT c.id FROM %[1]s AS c
	WHERE c.status = 'pending' AND c.available_at <= now()
	ORDER BY c.seq
	LIMIT $3
	FOR UPDATE OF c SKIP LOCKED
) AS picked
WHERE o.id = picked.id
RETURNING ` + returning
	q.claim = fmt.Sprintf(claim, table)
	// Ordered: only a key's head (its oldest undelivered row: pending, leased or dead) may be
	// claimed. Heads are looked for in two ways, so that neither many keys nor deep keys make a
	// claim read the whole backlog:
	//   - win: the first $4 due rows by seq, keeping those with no earlier undelivered row of
	//     their key (the undelivered (key, seq) index answers each probe). While keys flow, this
	//     finds a full batch at once.
	//   - heads: only when win found fewer than $3, a walk of that index one key at a time (a
	//     loose index scan: one probe per key with undelivered rows), which finds every head
	//     however deep behind blocked keys it sits; unkeyed rows come from the index's '' group,
	//     already in seq order (status <> 'dead' rather than = 'pending' keeps the planner on
	//     that index). The gate is a one-time filter, so the walk costs nothing when not needed.
	// The candidates are then locked and re-checked as in an unordered claim.
	q.claimOrdered = fmt.Sprintf(`WITH RECURSIVE win AS (
	SELECT w.id FROM (
		SELECT c.id, c.key, c.seq FROM %[1]s AS c
		WHERE c.status = 'pending' AND c.available_at <= now()
		ORDER BY c.seq LIMIT $4
	) AS w
	WHERE w.key = '' OR NOT EXISTS (
		SELECT 1 FROM %[1]s AS p WHERE p.key = w.key AND p.status <> 'delivered' AND p.seq < w.seq)
	LIMIT $3
), heads AS (
	(SELECT h.key, h.id FROM %[1]s AS h WHERE h.status <> 'delivered' AND h.key > '' ORDER BY h.key, h.seq LIMIT 1)
	UNION ALL
	SELECT nxt.key, nxt.id FROM heads, LATERAL (
		SELECT h.key, h.id FROM %[1]s AS h WHERE h.status <> 'delivered' AND h.key > heads.key ORDER BY h.key, h.seq LIMIT 1
	) AS nxt
), candidates AS (
	SELECT id FROM win
	UNION ALL
	SELECT id FROM heads WHERE (SELECT count(*) FROM win) < $3
	UNION ALL
	(SELECT u.id FROM %[1]s AS u
	WHERE u.key = '' AND u.status <> 'delivered' AND u.status <> 'dead' AND u.available_at <= now()
		AND (SELECT count(*) FROM win) < $3
	ORDER BY u.key, u.seq LIMIT $3)
)
UPDATE %[1]s AS o
SET lease_owner = $1, lease_until = now() + $2::float8 * interval '1 second', available_at = now() + $2::float8 * interval '1 second'
FROM (
	SELECT c.id FROM %[1]s AS c
	WHERE c.id IN (SELECT id FROM candidates) AND c.status = 'pending' AND c.available_at <= now()
	ORDER BY c.seq
	LIMIT $3
	FOR UPDATE OF c SKIP LOCKED
) AS picked
WHERE o.id = picked.id
RETURNING `+returning, table)

	if keepDelivered {
		q.ack = fmt.Sprintf(`UPDATE %s SET status = 'delivered', delivered_at = now(), lease_until = NULL
WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND status = 'pending'`, table)
	} else {
		q.ack = fmt.Sprintf(`DELETE FROM %s WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND status = 'pending'`, table)
	}

	q.nack = fmt.Sprintf(`UPDATE %s AS o SET
	attempts = o.attempts + 1,
	last_error = f.err,
	status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
	available_at = CASE WHEN f.dead THEN o.available_at ELSE f.retry_at END,
	dead_at = CASE WHEN f.dead THEN now() END,
	lease_owner = NULL,
	lease_until = NULL
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::bool[]) AS f(id, err, retry_at, dead)
WHERE o.id = f.id AND o.lease_owner = $5 AND o.status = 'pending'`, table)

	q.counts = fmt.Sprintf(`SELECT
	count(*) FILTER (WHERE status = 'pending'),
	count(*) FILTER (WHERE status = 'delivered'),
	count(*) FILTER (WHERE status = 'dead'),
	min(created_at) FILTER (WHERE status = 'pending')
FROM %s`, table)

	q.deleteDelivered = fmt.Sprintf(`DELETE FROM %[1]s WHERE id IN (
	SELECT id FROM %[1]s WHERE status = 'delivered' AND delivered_at < $1
	ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, table)

	q.deadColumns = `id::text, type, key, payload::text, result::text, headers::text, created_at, attempts, coalesce(last_error, ''), coalesce(dead_at, created_at)`
	q.deadFrom = table
	q.requeueSet = fmt.Sprintf(`UPDATE %s SET status = 'pending', attempts = 0, available_at = now(), dead_at = NULL, lease_owner = NULL, lease_until = NULL`, table)
	q.purge = fmt.Sprintf(`DELETE FROM %s`, table)
	return q
}
