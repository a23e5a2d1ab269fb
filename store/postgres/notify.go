package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/txoutbox/outbox"
)

// Reconnect delays of the listener after its connection breaks (a database restart, a
// terminated backend): quick first, capped so a long outage costs one attempt every few seconds.
var listenBackoff = outbox.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// Listen implements outbox.Notifier with LISTEN on a dedicated connection, outside the pool, so
// it never holds a pooled connection or sees pooled sessions' state. The channel receives a
// signal (coalesced) for every committed write and, after the connection was lost and
// re-established, one signal to say notifications may have been missed meanwhile. It is closed
// once the listening goroutine has exited, when ctx ends or the store is closed. The listener
// never queries the table: polling stays the relay's job.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("postgres: listen: %w", err)
	}
	if s.wal != nil {
		return s.listenWAL(ctx)
	}
	cfg, err := s.listenConfig()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.done, cancel)

	// The first connection is made before returning, so a caller that writes after Listen
	// returns is sure to be heard. When the server refuses it (credentials, database) Listen
	// fails and the relay polls; when the server is unreachable the listener keeps trying in the
	// background (the database may be starting) and signals once it is connected.
	conn, firstErr := s.listenConn(ctx, cfg)
	if firstErr != nil && (ctx.Err() != nil || refused(firstErr)) {
		stop()
		cancel()
		return nil, fmt.Errorf("postgres: listen: %w", firstErr)
	}
	out := make(chan struct{}, 1)
	s.listeners.Add(1)
	go func() {
		defer s.listeners.Done()
		defer close(out)
		defer stop()
		defer cancel()
		s.listen(ctx, cfg, conn, out)
	}()
	return out, nil
}

func (s *Store) listenConfig() (*pgx.ConnConfig, error) {
	if s.cfg.ListenURL != "" {
		cfg, err := pgx.ParseConfig(s.cfg.ListenURL)
		if err != nil {
			return nil, errors.New("postgres: listen: ListenURL is not a valid connection string")
		}
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = s.cfg.ConnectTimeout
		}
		return cfg, nil
	}
	cfg := s.pool.Config().ConnConfig.Copy()
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = s.cfg.ConnectTimeout
	}
	return cfg, nil
}

// listenConn opens a connection and subscribes it to the store's channel.
func (s *Store) listenConn(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// listen forwards notifications from conn to out until ctx ends, reconnecting whenever the
// connection breaks. conn may be nil: then it connects first.
func (s *Store) listen(ctx context.Context, cfg *pgx.ConnConfig, conn *pgx.Conn, out chan<- struct{}) {
	signal := func() {
		select {
		case out <- struct{}{}:
		default: // a signal is already waiting: they coalesce
		}
	}
	failures := 0
	for {
		if conn == nil {
			var err error
			if conn, err = s.listenConn(ctx, cfg); err != nil {
				failures++
				t := time.NewTimer(listenBackoff.Delay(failures))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
			failures = 0
			signal() // notifications sent while disconnected were lost
		}
		if _, err := conn.WaitForNotification(ctx); err != nil {
			closeConn(conn)
			conn = nil
			if ctx.Err() != nil {
				return
			}
			continue
		}
		signal()
	}
}

// refused reports whether the server answered with an error that retrying will not fix (bad
// credentials, a missing database, no permission), as opposed to being unreachable, starting up
// or shutting down (SQLSTATE classes 08 and 57), which the listener waits out.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	class := pgErr.Code[:2]
	return class != "08" && class != "57"
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
