package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/txoutbox/outbox/cmd/outbox/internal/corebench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/pgbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/sqsbench"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
)

const benchUsage = `Usage: outbox bench [--only LIST] [--store postgres://…] [--sqs-endpoint URL] [flags]

Runs the benchmarks and prints one JSON document on stdout; each result carries the raw baseline
it was measured against, in the same run, and the ratio to it. Progress goes to stderr.

Benchmarks (--only picks some, comma-separated):
  core              relay engine: in-memory store -> memory transport vs a raw claim-publish-ack loop
  postgres-write    a one-row business transaction with and without the outbox write
  postgres-drain    a backlog drained by the relay vs a raw DELETE … SKIP LOCKED loop
  postgres-latency  end-to-end latency at a steady rate, vs the write transaction's own
  sqs               relay -> SQS vs raw SendMessageBatch with the same client and concurrency
By default: core, the postgres ones when --store is a postgres URL, and sqs when --sqs-endpoint
is set. Each postgres benchmark works in a schema of its own and drops it; sqs makes its own
queues and deletes them.`

var benchNames = []string{"core", "postgres-write", "postgres-drain", "postgres-latency", "sqs"}

type benchFlags struct {
	only        string
	store       string
	sqsEndpoint string
	events      int
	rounds      int
	duration    time.Duration
}

// benchReport is the JSON bench prints.
type benchReport struct {
	GoVersion string                     `json:"go_version"`
	CPUs      int                        `json:"cpus"`
	Started   time.Time                  `json:"started"`
	Seconds   float64                    `json:"seconds"`
	Results   map[string]json.RawMessage `json:"results"`
}

func runBench(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox bench"
	f := newFlags(cmd, benchUsage)
	var b benchFlags
	f.fs.StringVar(&b.only, "only", "", "comma-separated benchmarks to run (default: every one whose server is given)")
	f.fs.StringVar(&b.store, "store", "", "PostgreSQL URL for the postgres benchmarks")
	f.env("store", "OUTBOX_STORE")
	f.fs.StringVar(&b.sqsEndpoint, "sqs-endpoint", "", "SQS endpoint for the sqs benchmark, e.g. http://127.0.0.1:4566")
	f.env("sqs-endpoint", "OUTBOX_SQS_ENDPOINT")
	f.fs.IntVar(&b.events, "events", 0, "events per drain measurement (default: each benchmark's own, 10000 to 100000)")
	f.fs.IntVar(&b.rounds, "rounds", 0, "rounds of each measurement (default: each benchmark's own)")
	f.fs.DurationVar(&b.duration, "duration", 0, "postgres-latency: length of the steady load (default 10s)")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	run, err := b.selection(cmd)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	report := benchReport{GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Started: time.Now().UTC(), Results: map[string]json.RawMessage{}}
	for _, name := range run {
		res, err := withProgress(e.stderr, name, func() (any, error) { return b.run(ctx, name) })
		if err != nil {
			return failed(cmd, fmt.Errorf("%s: %s", name, storeurl.Scrub(err.Error(), b.store)))
		}
		raw, err := json.Marshal(res)
		if err != nil {
			return failed(cmd, err)
		}
		report.Results[name] = raw
	}
	report.Seconds = time.Since(report.Started).Seconds()
	return writeJSON(e.stdout, report)
}

// selection returns the benchmarks to run, checking each has what it needs.
func (b *benchFlags) selection(cmd string) ([]string, error) {
	switch {
	case b.events < 0:
		return nil, usagef(cmd, "--events: must not be negative")
	case b.rounds < 0:
		return nil, usagef(cmd, "--rounds: must not be negative")
	case b.duration < 0:
		return nil, usagef(cmd, "--duration: must not be negative")
	}
	if b.store != "" {
		t, err := storeurl.Parse(b.store, storeurl.Options{})
		if err != nil {
			return nil, usagef(cmd, "--store (OUTBOX_STORE): %s", storeurl.Scrub(err.Error(), b.store))
		}
		if t.Kind != storeurl.Postgres {
			return nil, usagef(cmd, "--store (OUTBOX_STORE): the benchmarks need a postgres:// URL, not %s", t.Kind)
		}
	}
	if b.sqsEndpoint != "" && !strings.HasPrefix(b.sqsEndpoint, "http://") && !strings.HasPrefix(b.sqsEndpoint, "https://") {
		return nil, usagef(cmd, "--sqs-endpoint (OUTBOX_SQS_ENDPOINT): must start with http:// or https://")
	}
	var run []string
	if b.only == "" {
		run = []string{"core"}
		if b.store != "" {
			run = append(run, "postgres-write", "postgres-drain", "postgres-latency")
		}
		if b.sqsEndpoint != "" {
			run = append(run, "sqs")
		}
		return run, nil
	}
	for _, name := range strings.Split(b.only, ",") {
		name = strings.TrimSpace(name)
		switch {
		case !slices.Contains(benchNames, name):
			return nil, usagef(cmd, "--only: unknown benchmark %q (want %s)", name, strings.Join(benchNames, ", "))
		case strings.HasPrefix(name, "postgres") && b.store == "":
			return nil, usagef(cmd, "--only %s: needs --store postgres://…", name)
		case name == "sqs" && b.sqsEndpoint == "":
			return nil, usagef(cmd, "--only sqs: needs --sqs-endpoint")
		}
		if !slices.Contains(run, name) {
			run = append(run, name)
		}
	}
	return run, nil
}

func (b *benchFlags) run(ctx context.Context, name string) (any, error) {
	switch name {
	case "core":
		return corebench.Run(ctx, corebench.Options{Events: b.events, Rounds: b.rounds})
	case "sqs":
		return sqsbench.Run(ctx, sqsbench.Config{Endpoint: b.sqsEndpoint, Events: b.events, Rounds: b.rounds})
	}
	pool, err := pgbench.Connect(ctx, b.store, 16)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	switch name {
	case "postgres-write":
		return pgbench.WriteOverhead(ctx, pool, pgbench.WriteOptions{Rounds: b.rounds})
	case "postgres-drain":
		return pgbench.Drain(ctx, pool, pgbench.DrainOptions{Events: b.events, Rounds: b.rounds})
	default:
		return pgbench.Latency(ctx, pool, pgbench.LatencyOptions{Duration: b.duration})
	}
}

// withProgress runs fn, telling w when it starts and ends and, every progressEvery meanwhile,
// that it is still running, so a long benchmark is never mistaken for a hung one.
func withProgress(w io.Writer, name string, fn func() (any, error)) (any, error) {
	began := time.Now()
	fmt.Fprintf(w, "bench: %s: running\n", name)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "bench: %s: still running (%s)\n", name, time.Since(began).Round(time.Second))
			}
		}
	})
	res, err := fn()
	close(done)
	wg.Wait()
	if err == nil {
		fmt.Fprintf(w, "bench: %s: done in %s\n", name, time.Since(began).Round(100*time.Millisecond))
	}
	return res, err
}

var progressEvery = 10 * time.Second
