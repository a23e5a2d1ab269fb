package inbox

import (
	"context"
	"fmt"
)

// SchemaSQL returns the DDL that creates the inbox table, for migration tools. It is what
// EnsureSchema runs, and idempotent.
//
// The primary key (consumer, message_id) decides between deliveries of one message.
// processed_at is milliseconds since the Unix epoch by SQLite's clock; retention reads it
// through its own index.
func SchemaSQL(table string) (string, error) {
	if err := (Config{Table: table}).Validate(); err != nil {
		return "", err
	}
	return schemaSQL(table), nil
}

func schemaSQL(table string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	consumer     TEXT    NOT NULL,
	message_id   TEXT    NOT NULL,
	processed_at INTEGER NOT NULL,
	PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS %[2]s ON %[1]s (processed_at);
`, quote(table), quote(table+"_processed_at"))
}

// quote quotes a validated identifier.
func quote(name string) string { return `"` + name + `"` }

// EnsureSchema creates the table and its index when missing. It is idempotent.
func (in *Inbox) EnsureSchema(ctx context.Context) error {
	if _, err := in.db.ExecContext(ctx, schemaSQL(in.cfg.Table)); err != nil {
		return fmt.Errorf("%s: ensure schema %s: %w", component, in.cfg.Table, err)
	}
	return nil
}
