package sqlite

import "strings"

// queries holds the SQL of one table, built once with the quoted table name.
type queries struct {
	table   string   // quoted
	inserts []string // inserts[n] writes n rows
	claim   string
	// An ordered claim's statements, in the order Store.orderedRuns and Claim run them.
	lock, anyDead, dueHeads, behindHeads, undeliveredBetween, claimSeqs string
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
	q.claim = claimQuery(t)
	// A write that changes nothing takes the database's write lock first, so an ordered claim on
	// a handle without BEGIN IMMEDIATE (Config.DB) never starts as a reader that later fails to
	// upgrade.
	q.lock = `UPDATE ` + t + ` SET blocked = blocked WHERE seq IS NULL`
	q.anyDead = `SELECT EXISTS (SELECT 1 FROM ` + t + ` WHERE status = 'dead')`
	// Parameters: now, limit. The due heads and unkeyed messages, oldest first.
	q.dueHeads = `SELECT seq, key, 1 FROM ` + t + ` WHERE status = 'pending' AND blocked = 0 AND available_at <= ?
		ORDER BY seq LIMIT ?`
	// Parameters: now, limit. The pending messages behind heads, oldest first, and whether each
	// is due.
	q.behindHeads = `SELECT seq, key, available_at <= ? FROM ` + t + ` WHERE status = 'pending' AND blocked = 1
		ORDER BY seq LIMIT ?`
	// Parameters: key, after seq, before seq. The query repeats the key index's condition, key
	// <> '', or SQLite cannot use the partial index and scans the table.
	q.undeliveredBetween = `SELECT EXISTS (SELECT 1 FROM ` + t + ` WHERE key = ? AND status <> 'delivered' AND key <> ''
		AND seq > ? AND seq < ?)`
	// Parameters: token, lease end, the seqs as a JSON array.
	q.claimSeqs = `UPDATE ` + t + ` SET lease_owner = ?, available_at = ? WHERE seq IN (SELECT value FROM json_each(?))` + returning
	return q
}

func (q queries) insert(n int) string { return q.inserts[n] }

// returning is what a claim reads back, in the order Claim scans it.
const returning = ` RETURNING seq, id, type, key, payload, result, headers, created_at, attempts`

// claimQuery returns the unordered claim: one UPDATE ... RETURNING, whose first step takes the
// database's write lock, so concurrent claimers (in any process) run one after the other and
// never see the same due row, and a claim never starts as a reader that later fails to upgrade.
// It walks the due index in seq order and stops after LIMIT due rows: it neither scans nor sorts
// the backlog.
//
// Parameters: token, lease end, now, limit, now, limit, limit.
func claimQuery(t string) string {
	due := func(blocked string) string {
		return `SELECT seq FROM ` + t + ` WHERE status = 'pending' AND blocked = ` + blocked +
			` AND available_at <= ? ORDER BY seq LIMIT ?`
	}
	// The oldest due messages, heads or not. The index keeps heads and blocked messages apart,
	// so take the oldest LIMIT of each and then the oldest LIMIT of those.
	return `UPDATE ` + t + ` SET lease_owner = ?, available_at = ? WHERE seq IN (SELECT seq FROM (` + due("0") +
		`) UNION ALL SELECT seq FROM (` + due("1") + `) ORDER BY seq LIMIT ?)` + returning
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}
