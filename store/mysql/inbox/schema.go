package inbox

import (
	"context"
	"fmt"
)

// SchemaSQL returns the DDL that creates the inbox table, for migration tools. It is what
// EnsureSchema runs, and idempotent.
//
// The primary key (consumer, message_id) decides between deliveries of one message: InnoDB
// makes a second insert of an uncommitted key wait for the first transaction to end.
// processed_at is the server's UTC clock; retention reads it through its own index. The
// columns are binary-collated, so IDs that differ only in case are different messages.
func SchemaSQL(table string) (string, error) {
	if err := (Config{Table: table}).Validate(); err != nil {
		return "", err
	}
	return schemaSQL(table), nil
}

func schemaSQL(table string) string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %[1]s (
	consumer     VARCHAR(255) NOT NULL,
	message_id   VARCHAR(255) NOT NULL,
	processed_at DATETIME(6)  NOT NULL,
	PRIMARY KEY (consumer, message_id),
	KEY %[2]s (processed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`, quote(table), quote(table+"_processed_at"))
}

// quote quotes a validated identifier.
func quote(name string) string { return "`" + name + "`" }

// EnsureSchema creates the table and its index when missing. It is idempotent.
func (in *Inbox) EnsureSchema(ctx context.Context) error {
	if _, err := in.db.ExecContext(ctx, schemaSQL(in.cfg.Table)); err != nil {
		return fmt.Errorf("%s: ensure schema %s: %w", component, in.cfg.Table, err)
	}
	return nil
}
