//go:build torture

package torture

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// recordTabled makes a WAL lane's database record every row written to its outbox table, with
// the moment: in WAL mode the writers emit their events into the WAL only, and what reaches the
// table is what a relay wrote there instead of publishing it from the stream. That is poison and
// failures that charged an attempt (the journals' S lines), but also what a clean stop had not
// settled, what a stop released, and in ordered mode the later events of a key queued behind
// those; the slot may then confirm past them before any broker had them, rightly.
func (db *database) recordTabled(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fn := pgx.Identifier{db.schema, "record_tabled"}.Sanitize()
	for _, ddl := range []string{
		`CREATE TABLE ` + db.table("tabled") + ` (id uuid PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`,
		`CREATE FUNCTION ` + fn + `() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO ` + db.table("tabled") + ` (id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
	RETURN NULL;
END $$`,
		`CREATE TRIGGER record_tabled AFTER INSERT ON ` + db.table("outbox") + ` FOR EACH ROW EXECUTE FUNCTION ` + fn + `()`,
	} {
		if _, err := db.admin.Exec(ctx, ddl); err != nil {
			t.Fatalf("record the rows written to the outbox table: %v", err)
		}
	}
}

// tabled returns when each event first reached the outbox table (recordTabled).
func (db *database) tabled(ctx context.Context) (map[string]time.Time, error) {
	rows, err := db.admin.Query(ctx, "SELECT id::text, at FROM "+db.table("tabled"))
	if err != nil {
		return nil, fmt.Errorf("rows written to the outbox table: %w", err)
	}
	out := map[string]time.Time{}
	var id string
	var at time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error {
		out[id] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rows written to the outbox table: %w", err)
	}
	return out, nil
}
