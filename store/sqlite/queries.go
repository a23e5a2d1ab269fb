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
// a reader that later fails to upgrade. The subquery walks the pending index in seq order and
// stops after LIMIT due rows: it neither scans nor sorts the backlog.
//
// Parameters: owner, lease end, now, limit.
func claimQueries(t string) (unordered, ordered string) {
	const returning = ` RETURNING seq, id, type, key, payload, result, headers, created_at, attempts`
	update := `UPDATE ` + t + ` SET lease_owner = ?, available_at = ? WHERE seq IN (`
	unordered = update + `SELECT seq FROM ` + t + ` WHERE status = 'pending' AND available_at <= ? ORDER BY seq LIMIT ?)` + returning
	// A message is the head of its key when no earlier message with that key is undelivered
	// (pending, leased or dead); only heads are claimable, so at most one per key is returned and
	// a dead message blocks its key until it is requeued or purged.
	ordered = update + `SELECT o.seq FROM ` + t + ` AS o WHERE o.status = 'pending' AND o.available_at <= ?
		AND (o.key = '' OR NOT EXISTS (
			SELECT 1 FROM ` + t + ` AS p WHERE p.key = o.key AND p.status <> 'delivered' AND p.key <> '' AND p.seq < o.seq))
		ORDER BY o.seq LIMIT ?)` + returning
	return unordered, ordered
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
