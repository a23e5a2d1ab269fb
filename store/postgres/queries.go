package postgres

import "fmt"

// queries holds the SQL of one store, built once from its quoted table name. Every value travels
// as a parameter; only the validated, quoted identifier is pasted in. Parameters are plain
// scalars and text/uuid/timestamptz/bool arrays with explicit casts, so the statements work in
// pgx's simple protocol (PgBouncer) as well as with prepared statements.
type queries struct {
	add, addOne, addJSON    string
	addOneKeyed             string
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
	q.add = fmt.Sprintf(`WITH locked AS (
	-- Writers of one key take turns until commit (see lockIDs), before any row gets its seq.
	SELECT count(pg_advisory_xact_lock(l.id)) AS n FROM (SELECT DISTINCT id FROM unnest($10::int8[]) AS id ORDER BY id) AS l(id)
), ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	SELECT u.id, u.type, u.key, u.payload::json, u.result::json, u.headers::json, u.created_at
	FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
		WITH ORDINALITY AS u(id, type, key, payload, result, headers, created_at, n)
		CROSS JOIN locked
	ORDER BY u.n
) SELECT pg_notify($8, '') WHERE $9::bool`, table)
	// The common single-message write skips unnest's array handling.
	q.addOne = fmt.Sprintf(`WITH ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	VALUES ($1::uuid, $2::text, $3::text, $4::text::json, $5::text::json, $6::text::json, $7::timestamptz)
) SELECT pg_notify($8, '') WHERE $9::bool`, table)
	// One keyed message: the lock is taken by the statement's FROM item, before its row exists.
	q.addOneKeyed = fmt.Sprintf(`WITH ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	SELECT $1::uuid, $2::text, $3::text, $4::text::json, $5::text::json, $6::text::json, $7::timestamptz
	FROM (SELECT pg_advisory_xact_lock($10::int8)) AS locked
) SELECT pg_notify($8, '') WHERE $9::bool`, table)

	// database/sql drivers disagree on how arrays are passed, so AddSQL sends the batch as one
	// JSON document, which every driver passes as text.
	q.addJSON = fmt.Sprintf(`WITH locked AS (
	SELECT count(pg_advisory_xact_lock(l.id)) AS n FROM (SELECT DISTINCT id FROM unnest($4::text::int8[]) AS id ORDER BY id) AS l(id)
), ins AS (
	INSERT INTO %s (id, type, key, payload, result, headers, created_at)
	SELECT r.id, r.type, r.key, r.payload::json, r.result::json, r.headers::json, r.created_at
	FROM ROWS FROM (json_to_recordset($1::json) AS (id uuid, type text, key text, payload text, result text, headers text, created_at timestamptz))
		WITH ORDINALITY AS r(id, type, key, payload, result, headers, created_at, n)
		CROSS JOIN locked
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
	// Ordered: a key's run starts at its head (its oldest undelivered row: pending, leased or
	// dead), which must be due, and goes on through its next rows while they are due. Runs are
	// looked for in two ways, so that neither many keys nor deep keys make a claim read the whole
	// backlog:
	//   - win: the first $4 due rows by seq. A row belongs to a run when no undelivered row of its
	//     key lies before it outside the window: one probe of the undelivered (key, seq) index
	//     between it and the previous window row of its key (a range with both bounds, so the
	//     probe reads at most one entry however deep the key; seq starts at 1). While keys flow, this finds a full
	//     batch at once, however few keys there are.
	//   - deep: only when win found fewer than $3, a walk of that index one key at a time (a loose
	//     index scan: one probe per key with undelivered rows) for heads that are due, each
	//     followed by its run; unkeyed rows come from the index's '' group, in seq order (status
	//     <> 'dead' rather than = 'pending' keeps the planner on that index). The gates are
	//     one-time filters, so the walk costs nothing when not needed.
	// The candidates are then locked, skipping rows another claim holds, and fenced: a key's
	// locked rows are kept only while they are the first rows of its run as the candidates saw
	// it. A claim racing this one may hold (or have just leased) an earlier row of a key whose
	// later rows this one locked; then those later rows are left alone. Rows that commit after
	// this statement's snapshot cannot sit before a candidate of their key: writers of one key
	// take turns (lockIDs), so a later commit has a later seq.
	q.claimOrdered = fmt.Sprintf(`WITH RECURSIVE win AS (
	SELECT c.id, c.key, c.seq, lag(c.seq) OVER (PARTITION BY c.key ORDER BY c.seq) AS prev
	FROM (
		SELECT c.id, c.key, c.seq FROM %[1]s AS c
		WHERE c.status = 'pending' AND c.available_at <= now()
		ORDER BY c.seq LIMIT $4
	) AS c
), runs AS (
	SELECT r.id, r.key, r.seq FROM (
		SELECT g.id, g.key, g.seq, bool_and(g.ok) OVER (PARTITION BY g.key ORDER BY g.seq) AS ok FROM (
			SELECT w.id, w.key, w.seq, w.key = '' OR NOT EXISTS (
				SELECT 1 FROM %[1]s AS p WHERE p.key = w.key AND p.status <> 'delivered'
					AND p.seq < w.seq AND p.seq > coalesce(w.prev, 0)) AS ok
			FROM win AS w
		) AS g
	) AS r
	WHERE r.ok
	ORDER BY r.seq LIMIT $3
), heads AS (
	(SELECT h.key, h.status, h.available_at FROM %[1]s AS h WHERE h.status <> 'delivered' AND h.key > '' ORDER BY h.key, h.seq LIMIT 1)
	UNION ALL
	SELECT nxt.key, nxt.status, nxt.available_at FROM heads, LATERAL (
		SELECT h.key, h.status, h.available_at FROM %[1]s AS h WHERE h.status <> 'delivered' AND h.key > heads.key ORDER BY h.key, h.seq LIMIT 1
	) AS nxt
), deep AS (
	SELECT d.id, heads.key, d.seq FROM heads, LATERAL (
		SELECT x.id, x.seq FROM (
			SELECT k.id, k.seq, bool_and(k.status = 'pending' AND k.available_at <= now()) OVER (ORDER BY k.seq) AS due
			FROM (SELECT k.id, k.seq, k.status, k.available_at FROM %[1]s AS k
				WHERE k.key = heads.key AND k.status <> 'delivered' ORDER BY k.seq LIMIT $3) AS k
		) AS x WHERE x.due
	) AS d
	WHERE heads.status = 'pending' AND heads.available_at <= now() AND (SELECT count(*) FROM runs) < $3
), candidates AS (
	SELECT id, key, seq FROM runs
	UNION ALL
	SELECT id, key, seq FROM deep
	UNION ALL
	(SELECT u.id, u.key, u.seq FROM %[1]s AS u
	WHERE u.key = '' AND u.status <> 'delivered' AND u.status <> 'dead' AND u.available_at <= now()
		AND (SELECT count(*) FROM runs) < $3
	ORDER BY u.key, u.seq LIMIT $3)
), picked AS MATERIALIZED (
	SELECT c.id, c.key, c.seq FROM %[1]s AS c
	WHERE c.id IN (SELECT id FROM candidates) AND c.status = 'pending' AND c.available_at <= now()
	ORDER BY c.seq
	LIMIT $3
	FOR UPDATE OF c SKIP LOCKED
), ranked AS (
	-- Each keyed candidate's place in its key's run, as this statement's snapshot saw it.
	SELECT c.id, row_number() OVER (PARTITION BY c.key ORDER BY c.seq) AS place
	FROM (SELECT DISTINCT id, key, seq FROM candidates WHERE key <> '') AS c
), fenced AS (
	SELECT f.id FROM (
		SELECT p.id, bool_and(p.key = '' OR r.place = p.place) OVER (PARTITION BY p.key ORDER BY p.seq) AS ok
		FROM (SELECT id, key, seq, row_number() OVER (PARTITION BY key ORDER BY seq) AS place FROM picked) AS p
		LEFT JOIN ranked AS r ON r.id = p.id
	) AS f
	WHERE f.ok
)
UPDATE %[1]s AS o
SET lease_owner = $1, lease_until = now() + $2::float8 * interval '1 second', available_at = now() + $2::float8 * interval '1 second'
FROM fenced
WHERE o.id = fenced.id
RETURNING `+returning, table)

	if keepDelivered {
		q.ack = fmt.Sprintf(`UPDATE %s SET status = 'delivered', delivered_at = now(), lease_until = NULL
WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND status = 'pending'`, table)
	} else {
		q.ack = fmt.Sprintf(`DELETE FROM %s WHERE id = ANY($1::uuid[]) AND lease_owner = $2 AND status = 'pending'`, table)
	}

	// A release (f.release) charges no attempt and keeps the last error. Retry times are the
	// database's now() plus the delay, never the relay's clock.
	q.nack = fmt.Sprintf(`UPDATE %s AS o SET
	attempts = o.attempts + CASE WHEN f.release THEN 0 ELSE 1 END,
	last_error = CASE WHEN f.release THEN o.last_error ELSE f.err END,
	status = CASE WHEN f.dead THEN 'dead' ELSE 'pending' END,
	available_at = CASE WHEN f.dead THEN o.available_at ELSE now() + f.delay_us * interval '1 microsecond' END,
	dead_at = CASE WHEN f.dead THEN now() END,
	lease_owner = NULL,
	lease_until = NULL
FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::bool[], $5::bool[]) AS f(id, err, delay_us, dead, release)
WHERE o.id = f.id AND o.lease_owner = $6 AND o.status = 'pending'`, table)

	q.counts = fmt.Sprintf(`SELECT
	count(*) FILTER (WHERE status = 'pending'),
	count(*) FILTER (WHERE status = 'delivered'),
	count(*) FILTER (WHERE status = 'dead'),
	min(created_at) FILTER (WHERE status = 'pending')
FROM %s`, table)

	q.deleteDelivered = fmt.Sprintf(`DELETE FROM %[1]s WHERE id IN (
	SELECT id FROM %[1]s WHERE status = 'delivered' AND delivered_at < now() - $1::int8 * interval '1 microsecond'
	ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)`, table)

	q.deadColumns = `id::text, type, key, payload::text, result::text, headers::text, created_at, attempts, coalesce(last_error, ''), coalesce(dead_at, created_at)`
	q.deadFrom = table
	q.requeueSet = fmt.Sprintf(`UPDATE %s SET status = 'pending', attempts = 0, available_at = now(), dead_at = NULL, lease_owner = NULL, lease_until = NULL`, table)
	q.purge = fmt.Sprintf(`DELETE FROM %s`, table)
	return q
}
