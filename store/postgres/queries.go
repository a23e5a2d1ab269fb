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
	// keys is where the next ordered claim starts walking the keys (claimOrdered's $4).
	keys *keyCursor
}

// returning is what a claim reads back, in the order scanMessage expects (after an ordered
// claim's walk position).
const returning = `o.seq, o.id::text, o.type, o.key, o.payload::text, o.result::text, o.headers::text, o.created_at, o.attempts`

func buildQueries(table string, keepDelivered bool) queries {
	q := queries{keys: &keyCursor{}}

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
	// dead), which must be due, and goes on through its next rows while they are due. The claim
	// walks the keys that have undelivered rows, in key order, from the key after $4 (where the
	// store's previous ordered claim ended) round to $4 again, and takes each due key's run, up
	// to $3 rows per key, until it has $3 rows: a few long runs per claim, so a hot key drains
	// at batch speed, several claims can be in flight over different keys, and every key gets
	// its turn however busy the others are. The walk is a loose index scan of the undelivered
	// (key, seq) index (one probe per key) evaluated lazily: it stops as soon as the LIMIT is
	// met, so a claim reads the keys it returns and the held keys between them, not the
	// backlog. Unkeyed rows are the index's '' group: when the walk reaches it, its due rows in
	// seq order (status <> 'dead' rather than = 'pending' keeps the planner on that index).
	//
	// A key whose head another claim holds is passed over before its run is read: the head row
	// (the walk's ctid) is locked first, skipping it when it is locked or no longer due, so
	// claims that start together from the same key cost each other one probe per key.
	//
	// Each run is then read from this statement's snapshot (run), then its rows are locked,
	// skipping rows another claim holds, and fenced: the locked rows are kept only while the
	// i-th locked row is the run's i-th row. A claim racing this one may hold (or have just
	// leased) a row of the run; then it and everything after it are left alone, and the walk
	// goes on to the next key. Rows that commit after the snapshot cannot sit inside a run:
	// writers of one key take turns (lockIDs), so a later commit has a later seq; were one
	// there, the fence would stop the run before it. (status <> 'dead' again keeps the lock
	// scan on the (key, seq) index: the pending index would read every key's rows in the
	// range.)
	//
	// The LIMIT cuts in walk order, so the last key keeps a prefix of its run. The UPDATE finds
	// each row by the ctid its lock returned, which saves an index probe per row; a row that
	// changed after the snapshot (and was still due, so it was locked) has a ctid the snapshot
	// cannot see and is not updated. Each row returns its place in its key's run, and Claim
	// keeps a key's rows only while their places count 1, 2, 3... (see inRuns).
	// pos numbers the walk, so the store can start its next claim after this one's last key.
	q.claimOrdered = fmt.Sprintf(`WITH RECURSIVE after AS (
	(SELECT h.key, h.ctid AS head, h.status, h.available_at, 1::int8 AS pos FROM %[1]s AS h
	WHERE h.status <> 'delivered' AND h.key > $4 ORDER BY h.key, h.seq LIMIT 1)
	UNION ALL
	SELECT nxt.key, nxt.head, nxt.status, nxt.available_at, after.pos + 1 FROM after, LATERAL (
		SELECT h.key, h.ctid AS head, h.status, h.available_at FROM %[1]s AS h
		WHERE h.status <> 'delivered' AND h.key > after.key ORDER BY h.key, h.seq LIMIT 1
	) AS nxt
), before AS (
	(SELECT h.key, h.ctid AS head, h.status, h.available_at, 4294967296::int8 AS pos FROM %[1]s AS h
	WHERE h.status <> 'delivered' AND h.key <= $4 ORDER BY h.key, h.seq LIMIT 1)
	UNION ALL
	SELECT nxt.key, nxt.head, nxt.status, nxt.available_at, before.pos + 1 FROM before, LATERAL (
		SELECT h.key, h.ctid AS head, h.status, h.available_at FROM %[1]s AS h
		WHERE h.status <> 'delivered' AND h.key > before.key AND h.key <= $4 ORDER BY h.key, h.seq LIMIT 1
	) AS nxt
), walk AS (
	SELECT key, head, status, available_at, pos FROM after
	UNION ALL
	SELECT key, head, status, available_at, pos FROM before
), picked AS MATERIALIZED (
	SELECT w.pos, k.ctid, k.id, k.place FROM walk AS w, LATERAL (
		SELECT f.ctid, f.id, f.place FROM (
			SELECT g.ctid, g.id, g.seq, g.place, bool_and(g.same) OVER (ORDER BY g.seq) AS ok FROM (
				SELECT l.ctid, l.id, l.seq, l.place, coalesce(run.ids[l.place] = l.id, false) AS same FROM (
					SELECT array_agg(x.id ORDER BY x.seq) AS ids, min(x.seq) AS lo, max(x.seq) AS hi FROM (
						SELECT x.id, x.seq, bool_and(x.status = 'pending' AND x.available_at <= now()) OVER (ORDER BY x.seq) AS due
						FROM (SELECT x.id, x.seq, x.status, x.available_at FROM %[1]s AS x
							WHERE x.key = w.key AND x.status <> 'delivered' ORDER BY x.seq LIMIT $3) AS x
					) AS x
					WHERE x.due
				) AS run, LATERAL (
					SELECT l.ctid, l.id, l.seq, row_number() OVER (ORDER BY l.seq) AS place FROM (
						SELECT c.ctid, c.id, c.seq FROM %[1]s AS c
						WHERE c.key = w.key AND c.status <> 'delivered' AND c.status <> 'dead'
							AND c.seq >= run.lo AND c.seq <= run.hi AND c.available_at <= now()
						ORDER BY c.seq
						FOR UPDATE OF c SKIP LOCKED
					) AS l
				) AS l
				WHERE w.key <> '' AND w.status = 'pending' AND w.available_at <= now() AND EXISTS (
					SELECT FROM %[1]s AS hl WHERE hl.ctid = w.head AND hl.status <> 'delivered' AND hl.status <> 'dead' AND hl.available_at <= now()
					FOR UPDATE OF hl SKIP LOCKED)
				OFFSET 0 -- so the sort below carries a flag, not the run's array
			) AS g
		) AS f
		WHERE f.ok
		UNION ALL
		SELECT u.ctid, u.id, 0 FROM (
			SELECT u.ctid, u.id FROM %[1]s AS u
			WHERE w.key = '' AND u.key = '' AND u.status <> 'delivered' AND u.status <> 'dead' AND u.available_at <= now()
			ORDER BY u.seq LIMIT $3
			FOR UPDATE OF u SKIP LOCKED
		) AS u
	) AS k
	LIMIT $3
)
UPDATE %[1]s AS o
SET lease_owner = $1, lease_until = now() + $2::float8 * interval '1 second', available_at = now() + $2::float8 * interval '1 second'
FROM picked
WHERE o.ctid = picked.ctid AND o.id = picked.id
RETURNING picked.pos, picked.place, `+returning, table)

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
