// Package mysql is the MySQL and MariaDB backend of the outbox, on github.com/go-sql-driver/mysql
// through database/sql. Claims need FOR UPDATE SKIP LOCKED, so New refuses a server older than
// MySQL 8.0.1 or MariaDB 10.6, naming its version and the minimum.
//
// The write side takes the caller's *sql.Tx, so events commit or roll back with the business
// change: Add inside your transaction, or Execute, which begins, runs your function, adds the
// messages and commits. Add locks one row per message key in <table>_keys until the
// transaction ends, so two writers of one key take turns and a key's seq order is its commit
// order: an ordered relay never lets the later-committing event out first.
//
// The lock is taken by a BEFORE INSERT trigger on the table, <table>_key_lock, which upserts the
// row's key into <table>_keys before the server allocates the row's seq. So the common Add (one
// message, or several of one key, or none with a key) is a single INSERT on the caller's
// transaction; an Add with several keys first locks them in a statement of its own, sorted, so
// that two such Adds never deadlock. Creating the trigger needs the TRIGGER privilege on the
// table and, with binary logging on, SUPER or log_bin_trust_function_creators = 1 (MariaDB
// error 1419 otherwise); EnsureSchema's error says so when the server refuses, and SchemaSQL
// prints the statement for an administrator to run. The trigger runs with its definer's
// privileges (the user that created it): that user must keep INSERT and UPDATE on
// <table>_keys, and must not be dropped, or every INSERT into the table fails. CheckSchema
// (the relay's Start) refuses a table without the trigger, since without it writers of one key
// would no longer take turns.
//
// The key-lock table is pruned on the claim path (prune.go): once a minute per Store, claims
// sweep it a page of 500 rows at a time, deleting the rows of keys with no pending or dead
// message. A row is locked with FOR UPDATE SKIP LOCKED before it is deleted, so the row of a
// writer still in its transaction is passed over, and writers that come while the prune holds
// a row wait for it and then take turns on the row the first of them makes again. An idle
// relay's sweep costs one or two queries a minute when nothing is to be deleted.
//
// The relay side implements outbox.Store, outbox.Notifier, outbox.Inspector and (with
// Config.KeepDelivered) outbox.Retention. Start reading at claim.go:
//
//   - Claim runs at READ COMMITTED and locks due rows with SELECT ... FOR UPDATE SKIP LOCKED,
//     walking the (status, seq) claim index, so relays in many processes share the table
//     without waiting for each other. Leases, retry times and retention ages are all on the
//     server's clock (UTC_TIMESTAMP), never the relay's.
//   - Every claim records its token as the lease holder; Ack and Nack settle only rows that
//     still carry it, so a claim whose lease expired cannot settle what another claim holds.
//   - Ordered claims take each key's run from its head (its oldest pending or dead row), and
//     never two leases of one key. Keys take turns: a claim walks the keys from the one after
//     where the store's previous ordered claim ended and shares its batch out among the first
//     due keys, so with a limit L and K keys due every key is served within ceil(K/L) claims,
//     however long the older keys' backlogs. The walk is a loose scan of the (status, msg_key,
//     seq) index, one probe per key: a key whose head is leased or waiting for its retry costs
//     one probe, not one per row queued behind it. Behind 10,000 pending rows of one key whose
//     head is leased, with 100 other keys due, an ordered claim of 100 took 2.6-5 ms on MariaDB
//     10.11 here against 1.2-4.5 ms for an unordered one in the same run (1.1-2.1x; it was 28 ms
//     against 1.2 ms, 24x, when ordered claims took the oldest heads first by walking the
//     claim index past every blocked row).
//   - A row that no longer decodes (changed behind the store's back) is dead-lettered with the
//     reason at its first claim.
//
// Wake-up: MySQL has no LISTEN/NOTIFY. Execute, Notify, Requeue and Purge wake the relays of
// this process over the same table through an in-process signal; writes from other processes
// (or a bare Add without Notify) are found by the relay's polling.
//
// Errors read "mysql: <op>: <cause>"; a missing table says to run `outbox migrate` or
// EnsureSchema. Table names are checked as identifiers, never pasted as given.
//
// Schema: CheckSchema (and EnsureSchema after it) verifies the columns, the claim index
// outbox_claim (status, seq), the key index outbox_key (status, msg_key, seq) and the key-lock
// trigger (information_schema.triggers). A table made
// by an earlier, unreleased shape of this store, with outbox_key on (msg_key, status, seq), is
// refused with the ALTER TABLE statement that rebuilds the index, and a key-lock table without
// its msg_key column gets it from EnsureSchema (CheckSchema names the ALTER TABLE); its old
// rows are pruned as idle. No tagged release carried either earlier shape.
//
// binlog_format must be ROW (MIXED also works, since it logs unsafe statements as rows) when
// binary logging is on: claims run at READ COMMITTED, and InnoDB refuses writes at READ COMMITTED
// under STATEMENT logging, and a statement with SKIP LOCKED or LIMIT cannot be replayed on a
// replica to the same rows.
//
// What ran where: the store suite (outboxtest.RunStoreSuite, with and without KeepDelivered)
// passes on MariaDB 10.11. MySQL 8 is supported by design (the same SQL, SKIP LOCKED since
// 8.0.1) but has not been tested here.
package mysql
