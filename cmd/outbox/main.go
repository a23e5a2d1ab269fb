// Command outbox operates a transactional outbox from outside the services that write it: it
// runs the relay as a daemon, creates the schema, reports the outbox's state, inspects and
// replays dead letters, and runs the benchmarks.
//
//	outbox relay   --store postgres://… --sqs-queue-url https://…
//	outbox relay   --store postgres://… --transport kafka|nats|rabbitmq [--kafka-… | --nats-… | --rabbitmq-…]
//	outbox migrate --store postgres://…
//	outbox status  --store postgres://… [--relay http://HOST:PORT] [--json]
//	outbox dead list|requeue|purge --store … [--id ID]… [--type T] [--key K]
//	outbox console --store postgres://… [--listen 127.0.0.1:8081] [--read-only] [--hide-payloads]
//	outbox bench   [--only LIST] [--store postgres://…] [--sqs-endpoint …] [--nats-url …] [--rabbitmq-url …]
//
// Every flag can also come from an OUTBOX_* environment variable (named in --help), so that
// connection strings with passwords need not appear in the process list. A bad flag, URL or
// variable is reported in one line on stderr with exit code 2; a failure at run time exits 1.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	e := &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	os.Exit(run(context.Background(), e, os.Args[1:]))
}

// env is what a command reads and writes besides its arguments; tests supply their own.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand of outbox.
type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"relay", "publish stored messages to the broker until SIGTERM or SIGINT", runRelay},
		{"migrate", "create or upgrade the outbox table and indexes", runMigrate},
		{"provision", "create the stream, queues and dead letters the relay and consumers use", runProvision},
		{"status", "count messages by status; show the oldest pending and stalled keys", runStatus},
		{"dead", "list, requeue or purge dead letters", runDead},
		{"console", "serve the operator console (pages and JSON API) for the store", runConsole},
		{"bench", "measure the relay against raw baselines; JSON on stdout", runBench},
		{"version", "print the version of the command and of the outbox modules in it", runVersion},
	}
}

const usageText = `outbox operates a transactional outbox.

Usage:
  outbox <command> [flags]

Commands:
%s
Run "outbox help <command>" or "outbox <command> --help" for a command's flags and environment
variables, "outbox --version" for the version.
Exit codes: 0 success, 1 failure at run time, 2 bad command line or environment.
`

func printUsage(w io.Writer) {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, usageText, b.String())
}

// run executes the command line args and returns the process's exit code.
func run(ctx context.Context, e *env, args []string) int {
	// What a command prints goes through out, which keeps the first write error: output that
	// did not reach its file or pipe (a full disk, a closed pipe) fails the command with exit 1
	// rather than passing for success. The commands' own Fprint calls need not check each write.
	out := &outputWriter{w: e.stdout}
	withOut := *e
	withOut.stdout = out
	code := runCommand(ctx, &withOut, args)
	if out.err != nil && code == 0 {
		fmt.Fprintf(e.stderr, "outbox: writing the output: %s\n", oneLine(out.err.Error()))
		return 1
	}
	return code
}

// outputWriter writes to w until a write fails, then keeps that error and writes nothing more.
type outputWriter struct {
	w   io.Writer
	err error
}

func (o *outputWriter) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	o.err = err
	return n, err
}

func runCommand(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(e.stderr, `outbox: no command given (see "outbox --help")`)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		printUsage(e.stdout)
		return 0
	case "-version", "--version":
		printVersion(e)
		return 0
	case "help":
		if len(args) == 1 {
			printUsage(e.stdout)
			return 0
		}
		// "outbox help relay" is "outbox relay --help".
		args = []string{args[1], "--help"}
	}
	var names []string
	for _, c := range commands() {
		if c.name == args[0] {
			return exitCode(e.stderr, c.run(ctx, e, args[1:]))
		}
		names = append(names, c.name)
	}
	// A plain word is named, with the command it was probably meant to be; anything else is not
	// repeated: it may be a connection string typed first.
	msg := "outbox: unknown command"
	if name := nameOrNothing("", args[0]); name != "" {
		msg += fmt.Sprintf(" %q", args[0])
		if s := suggest(args[0], names); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
	} else {
		msg += " (not repeated: it may hold a secret)"
	}
	fmt.Fprintf(e.stderr, "%s; want %s (see \"outbox --help\")\n", msg, strings.Join(names, ", "))
	return 2
}
