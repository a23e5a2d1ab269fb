package sqlite

import "strings"

// queries holds the SQL of one table, built once with the quoted table name.
type queries struct {
	table        string   // quoted
	inserts      []string // inserts[n] writes n rows
	claim        string
	claimOrdered string
}

func newQueries(table string) queries {
	t := quote(table)
	q := queries{table: t, inserts: make([]string, insertChunk+1)}
	for n := 1; n <= insertChunk; n++ {
		var b strings.Builder
		b.WriteString("INSERT INTO " + t + " (id, type, key, payload, result, headers, created_at, available_at) VALUES ")
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?)")
		}
		q.inserts[n] = b.String()
	}
	q.claim, q.claimOrdered = claimQueries(t)
	return q
}

func (q queries) insert(n int) string { return q.inserts[n] }

// claimQueries returns the unordered and ordered claim statements. Each is one UPDATE ...
// RETURNING: its first step takes the database's write lock, so concurrent claimers (in any
// process) run one after the other and never see the same due row, and a claim never starts as
// a reader that later fails to upgrade. Each walks the due index in seq order and stops after
// LIMIT due rows: it neither scans nor sorts the backlog.
//
// Parameters, unordered: token, lease end, now, limit, now, limit, limit. Ordered: token, lease
// end, now, limit, now, window, limit.
func claimQueries(t string) (unordered, ordered string) {
	const returning = ` RETURNING seq, id, type, key, payload, result, headers, created_at, attempts`
	update := `UPDATE ` + t + ` SET lease_owner = ?, available_at = ? WHERE seq IN (`
	due := func(blocked string) string {
		return `SELECT seq, key, blocked FROM ` + t + ` WHERE status = 'pending' AND blocked = ` + blocked +
			` AND available_at <= ? ORDER BY seq LIMIT ?`
	}
	// Unordered: the oldest due messages, heads or not. The index keeps heads and blocked
	// messages apart, so take the oldest LIMIT of each and then the oldest LIMIT of those.
	unordered = update + `SELECT seq FROM (` + due("0") + `) UNION ALL SELECT seq FROM (` + due("1") +
		`) ORDER BY seq LIMIT ?)` + returning
	// Ordered: per-key runs. Candidates are the due heads (blocked = 0, which includes unkeyed
	// messages) and a window of the oldest due blocked messages. A key's run starts at its head
	// and goes on through candidates of its key with no undelivered message between one and the
	// next (one probe of the key index each: the probe repeats the index's condition, key <> '',
	// or SQLite cannot use the partial index and scans the table); a leased, retrying or dead
	// message ends it.
	ordered = update + `SELECT seq FROM (
		SELECT seq, min(ok) OVER (PARTITION BY key ORDER BY seq) AS run FROM (
			SELECT c.seq, c.key, CASE
				WHEN c.key = '' THEN 1
				WHEN c.prev IS NULL THEN c.blocked = 0
				ELSE NOT EXISTS (SELECT 1 FROM ` + t + ` AS p WHERE p.key = c.key AND p.status <> 'delivered' AND p.key <> ''
					AND p.seq > c.prev AND p.seq < c.seq)
			END AS ok
			FROM (
				SELECT seq, key, blocked, lag(seq) OVER (PARTITION BY key ORDER BY seq) AS prev FROM (
					SELECT * FROM (` + due("0") + `) UNION ALL SELECT * FROM (` + due("1") + `))
			) AS c
		)
	) WHERE run = 1 ORDER BY seq LIMIT ?)` + returning
	return unordered, ordered
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
