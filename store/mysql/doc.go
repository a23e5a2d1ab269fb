// Package mysql is the MySQL and MariaDB backend of the outbox, on github.com/go-sql-driver/mysql
// through database/sql. Claims need FOR UPDATE SKIP LOCKED, so New refuses a server older than
// MySQL 8.0.1 or MariaDB 10.6, naming its version and the minimum.
//
// This package is at its start: it holds the configuration, the server check and the schema
// (SchemaSQL, EnsureSchema). The write side (Add, Execute) and the relay side (Claim, Ack, Nack)
// are still to come.
//
// binlog_format must be ROW (MIXED also works, since it logs unsafe statements as rows) when
// binary logging is on: claims run at READ COMMITTED, and InnoDB refuses writes at READ COMMITTED
// under STATEMENT logging, and a statement with SKIP LOCKED or LIMIT cannot be replayed on a
// replica to the same rows.
package mysql
