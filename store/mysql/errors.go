package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
)

// Server error numbers the store reacts to.
const (
	errNoSuchTable  = 1146 // ER_NO_SUCH_TABLE
	errLockWait     = 1205 // ER_LOCK_WAIT_TIMEOUT
	errDeadlock     = 1213 // ER_LOCK_DEADLOCK
	maxTxRetries    = 3
	maxTokenLength  = 255 // lease_owner's width
	idChunk         = 500 // IDs one Ack statement lists
	defaultListSize = 100 // dead letters ListDead returns without a Limit
)

// explain adds what to do to a server error the caller can fix: a missing table means the
// schema was never applied (or was dropped).
func (s *Store) explain(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == errNoSuchTable {
		return fmt.Errorf("%w (create it with `outbox migrate` or Store.EnsureSchema, or apply SchemaSQL)", err)
	}
	return err
}

// retryable reports a transaction InnoDB chose to abort (a deadlock victim, a lock wait that
// timed out): running it again is safe, since nothing of it committed.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == errDeadlock || me.Number == errLockWait)
}

// inTx runs fn in one READ COMMITTED transaction and commits, running it again (up to
// maxTxRetries times) when InnoDB aborts it as a deadlock victim. Errors are `mysql: op: cause`.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := s.checkOpen(); err != nil {
		return fmt.Errorf("mysql: %s: %w", op, err)
	}
	var err error
	for range maxTxRetries {
		if err = s.tryTx(ctx, fn); err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("mysql: %s: %w", op, s.explain(err))
	}
	return nil
}

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
