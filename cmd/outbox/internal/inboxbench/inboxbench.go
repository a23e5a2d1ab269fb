// Package inboxbench measures what the inbox costs a consumer: the same consumer and the same
// handler (one business row written in a transaction of the consumer's database), with the
// inbox (the row and the inbox record in one transaction, through Handle) and without it (the
// row alone), in the same run, alternating rounds so that load from other processes hits both
// alike. Results are medians and ratios (inbox / raw).
//
// Two paths: the memory consumer, where the database is the only cost, so the ratio is the
// inbox's own; and the SQS consumer on an SQS endpoint (fauxqs in the repository's setup),
// where receiving and deleting messages count too, as in a service. A third figure is the
// inbox's throughput on deliveries that are all duplicates.
package inboxbench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/cmd/outbox/internal/benchutil"
	pginbox "github.com/txoutbox/outbox/store/postgres/inbox"
	sqliteinbox "github.com/txoutbox/outbox/store/sqlite/inbox"
	"github.com/txoutbox/outbox/transport/memory"
	"github.com/txoutbox/outbox/transport/sqs"
)

// Options tunes Run. The zero value of every field means its documented default.
type Options struct {
	// PostgresURL is the PostgreSQL server measured; the run creates and drops a schema of its
	// own. Default: no PostgreSQL rows.
	PostgresURL string
	// SQLiteDir is where the SQLite database files go. Default: no SQLite rows.
	SQLiteDir string
	// SQSEndpoint is the SQS endpoint of the SQS path, with test credentials (an emulator).
	// Default: no SQS rows.
	SQSEndpoint string
	// Messages handled by each measurement. Default 3000.
	Messages int
	// Concurrency of the consumer's handlers. Default 8.
	Concurrency int
	// Rounds alternate raw and inbox measurements. Default 3.
	Rounds int
}

func (o Options) withDefaults() Options {
	if o.Messages == 0 {
		o.Messages = 3000
	}
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	return o
}

// Row compares one database and consumer with and without the inbox.
type Row struct {
	Database    string    `json:"database"` // postgres or sqlite
	Consumer    string    `json:"consumer"` // memory or sqs
	Messages    int       `json:"messages"`
	Concurrency int       `json:"concurrency"`
	RawPerSec   float64   `json:"raw_per_sec"`
	InboxPerSec float64   `json:"inbox_per_sec"`
	Ratio       float64   `json:"ratio"` // InboxPerSec / RawPerSec
	RawRuns     []float64 `json:"raw_runs"`
	InboxRuns   []float64 `json:"inbox_runs"`
	// DuplicatesPerSec is the inbox consumer redelivered every message again: each delivery a
	// duplicate, recognised without running the handler. Memory consumer only.
	DuplicatesPerSec float64 `json:"duplicates_per_sec,omitempty"`
}

// Result is every row measured.
type Result struct {
	Rows []Row `json:"rows"`
}

// Run measures every database and consumer Options names.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Messages < 0 || o.Concurrency < 0 || o.Rounds < 0 {
		return Result{}, errors.New("inboxbench: options must not be negative")
	}
	o = o.withDefaults()
	var dbs []*database
	if o.PostgresURL != "" {
		db, err := openPostgres(ctx, o.PostgresURL)
		if err != nil {
			return Result{}, err
		}
		defer db.close()
		dbs = append(dbs, db)
	}
	if o.SQLiteDir != "" {
		db, err := openSQLite(ctx, filepath.Join(o.SQLiteDir, "inboxbench.db"))
		if err != nil {
			return Result{}, err
		}
		defer db.close()
		dbs = append(dbs, db)
	}
	if len(dbs) == 0 {
		return Result{}, errors.New("inboxbench: no database to measure (set PostgresURL or SQLiteDir)")
	}
	var res Result
	for _, db := range dbs {
		row, err := measure(ctx, o, db, "memory", memoryPath)
		if err != nil {
			return res, err
		}
		res.Rows = append(res.Rows, row)
		if o.SQSEndpoint != "" {
			row, err := measure(ctx, o, db, "sqs", sqsPath(o.SQSEndpoint))
			if err != nil {
				return res, err
			}
			res.Rows = append(res.Rows, row)
		}
	}
	return res, nil
}

// path delivers msgs to handle through one kind of consumer at concurrency c and returns the
// rate; dups is the rate of a second delivery of every message (memory only, else 0).
type path func(ctx context.Context, msgs []*outbox.Message, c int, handle func(context.Context, *outbox.Message) error, again bool) (rate, dups float64, err error)

func measure(ctx context.Context, o Options, db *database, consumer string, p path) (Row, error) {
	row := Row{Database: db.name, Consumer: consumer, Messages: o.Messages, Concurrency: o.Concurrency}
	var dupRuns []float64
	for round := range o.Rounds {
		for _, withInbox := range []bool{false, true} {
			if err := db.reset(ctx); err != nil {
				return row, err
			}
			msgs, err := messages(o.Messages, round)
			if err != nil {
				return row, err
			}
			handle := db.raw
			if withInbox {
				handle = db.inbox
			}
			rate, dups, err := p(ctx, msgs, o.Concurrency, handle, withInbox && consumer == "memory")
			if err != nil {
				return row, fmt.Errorf("inboxbench: %s %s (inbox %t): %w", db.name, consumer, withInbox, err)
			}
			if n, err := db.count(ctx); err != nil {
				return row, err
			} else if n != o.Messages {
				return row, fmt.Errorf("inboxbench: %s %s (inbox %t): %d business rows for %d messages", db.name, consumer, withInbox, n, o.Messages)
			}
			if withInbox {
				row.InboxRuns = append(row.InboxRuns, rate)
				if dups > 0 {
					dupRuns = append(dupRuns, dups)
				}
			} else {
				row.RawRuns = append(row.RawRuns, rate)
			}
		}
	}
	row.RawPerSec, row.InboxPerSec = benchutil.Median(row.RawRuns), benchutil.Median(row.InboxRuns)
	row.DuplicatesPerSec = benchutil.Median(dupRuns)
	if row.RawPerSec > 0 {
		row.Ratio = row.InboxPerSec / row.RawPerSec
	}
	return row, nil
}

// messages returns n prepared messages as a consumer decodes them.
func messages(n, round int) ([]*outbox.Message, error) {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: "BENCH_EVENT", Payload: json.RawMessage(fmt.Sprintf(`{"round":%d,"n":%d}`, round, i))}
	}
	return msgs, backend.Prepare(context.Background(), msgs, backend.WriteOptions{})
}

// memoryPath publishes msgs from c goroutines to a memory consumer of concurrency c.
func memoryPath(ctx context.Context, msgs []*outbox.Message, c int, handle func(context.Context, *outbox.Message) error, again bool) (float64, float64, error) {
	tr := memory.New()
	cons, err := memory.NewConsumer(ctx, memory.ConsumerConfig{Transport: tr, Handler: handle, Concurrency: c})
	if err != nil {
		return 0, 0, err
	}
	if err := cons.Start(ctx); err != nil {
		return 0, 0, err
	}
	defer func() { _ = cons.Stop(context.WithoutCancel(ctx)) }()
	deliver := func() (float64, error) {
		began := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, c)
		for w := range c {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(msgs); i += c {
					if err := tr.Publish(ctx, msgs[i:i+1]); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, err
		}
		return float64(len(msgs)) / time.Since(began).Seconds(), nil
	}
	rate, err := deliver()
	if err != nil || !again {
		return rate, 0, err
	}
	dups, err := deliver()
	return rate, dups, err
}

// sqsPath fills a fresh queue with msgs (untimed), then times an SQS consumer of concurrency c
// until it deleted them all.
func sqsPath(endpoint string) path {
	return func(ctx context.Context, msgs []*outbox.Message, c int, handle func(context.Context, *outbox.Message) error, _ bool) (float64, float64, error) {
		conn := sqs.Config{Connection: sqs.Connection{Region: "us-east-1", AccessKeyID: "AKIAINBOXBENCH", SecretAccessKey: "inboxbench", Endpoint: endpoint}}
		admin := conn
		admin.QueueURL = "unused"
		tr, err := sqs.New(ctx, admin)
		if err != nil {
			return 0, 0, err
		}
		defer func() { _ = tr.Close() }()
		out, err := tr.Client().CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(fmt.Sprintf("inboxbench-%d", time.Now().UnixNano()))})
		if err != nil {
			return 0, 0, fmt.Errorf("create queue: %w", err)
		}
		url := aws.ToString(out.QueueUrl)
		defer func() {
			_, _ = tr.Client().DeleteQueue(context.WithoutCancel(ctx), &awssqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		}()
		conn.QueueURL = url
		pub, err := sqs.New(ctx, conn)
		if err != nil {
			return 0, 0, err
		}
		defer func() { _ = pub.Close() }()
		for i := 0; i < len(msgs); i += 100 {
			if err := pub.Publish(ctx, msgs[i:min(i+100, len(msgs))]); err != nil {
				return 0, 0, err
			}
		}
		var handled atomic.Int64
		done := make(chan struct{})
		cons, err := sqs.NewConsumer(ctx, sqs.ConsumerConfig{
			Connection:  sqs.Connection{Region: conn.Region, AccessKeyID: conn.AccessKeyID, SecretAccessKey: conn.SecretAccessKey, Endpoint: endpoint},
			QueueURL:    url,
			Concurrency: c,
			WaitTime:    time.Second,
			Handler: func(ctx context.Context, m *outbox.Message) error {
				if err := handle(ctx, m); err != nil {
					return err
				}
				if handled.Add(1) == int64(len(msgs)) {
					close(done)
				}
				return nil
			},
		})
		if err != nil {
			return 0, 0, err
		}
		began := time.Now()
		if err := cons.Start(ctx); err != nil {
			return 0, 0, err
		}
		select {
		case <-done:
		case <-ctx.Done():
		}
		stopErr := cons.Stop(context.WithoutCancel(ctx))
		elapsed := time.Since(began)
		if err := errors.Join(ctx.Err(), stopErr); err != nil {
			return 0, 0, err
		}
		return float64(len(msgs)) / elapsed.Seconds(), 0, nil
	}
}

// database is the consumer's database: a business table, an inbox, and the two handlers.
type database struct {
	name       string
	raw, inbox func(context.Context, *outbox.Message) error
	reset      func(context.Context) error
	count      func(context.Context) (int, error)
	close      func()
}

func openPostgres(ctx context.Context, url string) (*database, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("inboxbench: postgres: %w", err)
	}
	schema := fmt.Sprintf("inboxbench_%d", time.Now().UnixNano())
	in, err := pginbox.New(pool, pginbox.Config{Schema: schema})
	if err == nil {
		err = in.EnsureSchema(ctx)
	}
	effects := pgx.Identifier{schema, "effects"}.Sanitize()
	records := pgx.Identifier{schema, pginbox.DefaultTable}.Sanitize()
	if err == nil {
		_, err = pool.Exec(ctx, "CREATE TABLE "+effects+" (message_id text NOT NULL, payload json NOT NULL)")
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("inboxbench: postgres: %w", err)
	}
	insert := "INSERT INTO " + effects + " VALUES ($1, $2)"
	return &database{
		name: "postgres",
		raw: func(ctx context.Context, m *outbox.Message) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, insert, m.ID, string(m.Payload))
				return err
			})
		},
		inbox: func(ctx context.Context, m *outbox.Message) error {
			_, err := in.Handle(ctx, "bench", m, func(ctx context.Context, tx pgx.Tx) error {
				_, err := tx.Exec(ctx, insert, m.ID, string(m.Payload))
				return err
			})
			return err
		},
		reset: func(ctx context.Context) error {
			_, err := pool.Exec(ctx, "TRUNCATE "+effects+", "+records)
			return err
		},
		count: func(ctx context.Context) (n int, err error) {
			err = pool.QueryRow(ctx, "SELECT count(*) FROM "+effects).Scan(&n)
			return n, err
		},
		close: func() {
			_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			pool.Close()
		},
	}, nil
}

func openSQLite(ctx context.Context, path string) (*database, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("inboxbench: sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	in, err := sqliteinbox.New(db, sqliteinbox.Config{})
	if err == nil {
		err = in.EnsureSchema(ctx)
	}
	if err == nil {
		_, err = db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS effects (message_id TEXT NOT NULL, payload TEXT NOT NULL)")
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("inboxbench: sqlite: %w", err)
	}
	write := func(ctx context.Context, tx *sql.Tx, m *outbox.Message) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO effects VALUES (?, ?)", m.ID, string(m.Payload))
		return err
	}
	return &database{
		name: "sqlite",
		raw: func(ctx context.Context, m *outbox.Message) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := write(ctx, tx, m); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		},
		inbox: func(ctx context.Context, m *outbox.Message) error {
			_, err := in.Handle(ctx, "bench", m, func(ctx context.Context, tx *sql.Tx) error { return write(ctx, tx, m) })
			return err
		},
		reset: func(ctx context.Context) error {
			_, err := db.ExecContext(ctx, "DELETE FROM effects; DELETE FROM inbox")
			return err
		},
		count: func(ctx context.Context) (n int, err error) {
			err = db.QueryRowContext(ctx, "SELECT count(*) FROM effects").Scan(&n)
			return n, err
		},
		close: func() { _ = db.Close() },
	}, nil
}
