package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true") // never reach for cloud credentials from tests
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runCLI runs the command line in process with the environment vars and returns the exit code,
// stdout and stderr.
func runCLI(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), e, args)
	return code, stdout.String(), stderr.String()
}

func TestUsageErrors(t *testing.T) {
	const secret = "pa55word"
	pgURL := "postgres://app:" + secret + "@127.0.0.1:1/db"
	tests := []struct {
		name string
		args []string
		vars map[string]string
		want string // in the one stderr line
	}{
		{"no command", nil, nil, "no command given"},
		{"unknown command", []string{"deploy"}, nil, `unknown command "deploy"; want relay,`},
		{"mistyped command", []string{"rleay"}, nil, `unknown command "rleay" (did you mean "relay"?)`},
		{"secret as command", []string{"postgres://app:" + secret + "@h/db"}, nil, "unknown command (not repeated"},
		{"unknown flag", []string{"relay", "--bogus"}, nil, "unknown flag --bogus"},
		{"mistyped flag", []string{"relay", "--stor", pgURL}, nil, "unknown flag --stor (did you mean --store?)"},
		{"mistyped flag with value", []string{"status", "--stroe=" + pgURL}, nil, "unknown flag --stroe (did you mean --store?)"},
		{"secret as flag", []string{"relay", "--" + pgURL}, nil, "unknown flag (not repeated"},
		{"flag without value", []string{"relay", "--store"}, nil, "--store (OUTBOX_STORE) needs a value"},
		{"bad int", []string{"relay", "--batch-size", "many"}, nil, "--batch-size (OUTBOX_BATCH_SIZE): not an integer"},
		{"bad duration", []string{"relay", "--lease", pgURL}, nil, "--lease (OUTBOX_LEASE): not a duration"},
		{"bad bool", []string{"relay", "--unordered=" + secret}, nil, "--unordered (OUTBOX_UNORDERED): not true or false"},
		{"bad backoff from env", []string{"relay"}, map[string]string{"OUTBOX_STORE": pgURL, "OUTBOX_TRANSPORT": "memory", "OUTBOX_BACKOFF_JITTER": "2"}, "--backoff-jitter (OUTBOX_BACKOFF_JITTER): must be below 1"},
		{"missing store", []string{"relay", "--transport", "memory"}, nil, "--store (OUTBOX_STORE): is empty"},
		{"bad store scheme", []string{"status", "--store", "oracle://" + secret + "@h/db"}, nil, `unknown scheme "oracle"`},
		{"bad store URL", []string{"migrate", "--store", "postgres://app:" + secret + "@h:port/db"}, nil, "--store (OUTBOX_STORE): is not a valid URL"},
		{"store from env", []string{"status"}, map[string]string{"OUTBOX_STORE": "nope"}, "--store (OUTBOX_STORE): has no scheme"},
		{"bad env int", []string{"relay"}, map[string]string{"OUTBOX_STORE": pgURL, "OUTBOX_BATCH_SIZE": "x"}, "OUTBOX_BATCH_SIZE: invalid value for --batch-size"},
		{"table on mongo", []string{"status", "--store", "mongodb://h/app", "--table", "t"}, nil, "use --collection"},
		{"bad table", []string{"migrate", "--store", pgURL, "--table", "a-b"}, nil, "--table (OUTBOX_TABLE): \"a-b\" must match"},
		{"bad schema", []string{"status", "--store", pgURL, "--schema", "a b"}, nil, "--schema (OUTBOX_SCHEMA): "},
		{"bad collection", []string{"status", "--store", "mongodb://h/app", "--collection", "a-b"}, nil, "--collection (OUTBOX_COLLECTION): "},
		{"empty table", []string{"status", "--store", pgURL, "--table", ""}, nil, "--table (OUTBOX_TABLE): is empty"},
		{"print-sql empty table", []string{"migrate", "--print-sql", "--table", ""}, nil, "--table (OUTBOX_TABLE): is empty"},
		{"print-sql bad table", []string{"migrate", "--print-sql", "--table", "a-b"}, nil, "--table (OUTBOX_TABLE): \"a-b\" must match"},
		{"no queue", []string{"relay", "--store", pgURL}, nil, "--sqs-queue-url (OUTBOX_SQS_QUEUE_URL): is empty"},
		{"bad queue", []string{"relay", "--store", pgURL, "--sqs-queue-url", "ftp://q"}, nil, "--sqs-queue-url (OUTBOX_SQS_QUEUE_URL): "},
		{"bad endpoint", []string{"relay", "--store", pgURL, "--sqs-queue-url", "q", "--sqs-endpoint", "localhost"}, nil, "--sqs-endpoint (OUTBOX_SQS_ENDPOINT): "},
		{"bad sqs concurrency", []string{"relay", "--store", pgURL, "--sqs-queue-url", "q", "--sqs-concurrency", "1000"}, nil, "--sqs-concurrency (OUTBOX_SQS_CONCURRENCY): 1000 is above 256"},
		{"half credentials", []string{"relay", "--store", pgURL, "--sqs-queue-url", "q"}, map[string]string{"OUTBOX_SQS_ACCESS_KEY_ID": "AKIA" + secret}, "OUTBOX_SQS_SECRET_ACCESS_KEY: is empty"},
		{"bad transport", []string{"relay", "--store", pgURL, "--transport", "pulsar"}, nil, "--transport (OUTBOX_TRANSPORT): not one of sqs, kafka, nats, rabbitmq, memory"},
		{"negative batch", []string{"relay", "--store", pgURL, "--transport", "memory", "--batch-size", "-1"}, nil, "--batch-size (OUTBOX_BATCH_SIZE): is negative"},
		{"publish timeout above lease", []string{"relay", "--store", pgURL, "--transport", "memory", "--lease", "1s", "--publish-timeout", "2s"}, nil, "--publish-timeout (OUTBOX_PUBLISH_TIMEOUT): 2s must be below Lease"},
		{"bad listen", []string{"relay", "--store", pgURL, "--transport", "memory", "--listen", "9090"}, nil, "--listen (OUTBOX_LISTEN)"},
		{"retain without keep", []string{"relay", "--store", pgURL, "--transport", "memory", "--retain-delivered", "24h"}, nil, "--retain-delivered needs --keep-delivered"},
		{"bad log level", []string{"relay", "--store", pgURL, "--transport", "memory", "--log-level", "loud"}, nil, "--log-level"},
		{"positional", []string{"status", "--store", pgURL, "extra"}, nil, "unexpected argument (not repeated"},
		{"dead without op", []string{"dead"}, nil, "no subcommand"},
		{"dead bad op", []string{"dead", "revive"}, nil, "unknown subcommand (not repeated"},
		{"dead bad id", []string{"dead", "list", "--store", pgURL, "--id", "42"}, nil, "--id: not a message ID"},
		{"purge without filter", []string{"dead", "purge", "--store", pgURL}, nil, "no filter"},
		{"json on requeue", []string{"dead", "requeue", "--store", pgURL, "--all", "--json"}, nil, "--json applies to list only"},
		{"negative limit", []string{"dead", "list", "--store", pgURL, "--limit", "-5"}, nil, "--limit"},
		{"bad postgres mode", []string{"migrate", "--store", pgURL, "--postgres-mode", "logical"}, nil, `--postgres-mode (OUTBOX_POSTGRES_MODE): "logical" is not table or wal`},
		{"postgres mode on sqlite", []string{"status", "--store", "sqlite:x.db", "--postgres-mode", "wal"}, nil, "--postgres-mode (OUTBOX_POSTGRES_MODE): applies to postgres only"},
		{"wal slot in table mode", []string{"status", "--store", pgURL, "--wal-slot", "s"}, nil, "--wal-slot (OUTBOX_WAL_SLOT): applies to the WAL mode only"},
		{"wal lag alarm in table mode", []string{"relay", "--store", pgURL, "--transport", "memory"}, map[string]string{"OUTBOX_WAL_LAG_ALARM": "100"}, "--wal-lag-alarm (OUTBOX_WAL_LAG_ALARM): applies to the WAL mode only"},
		{"bad wal slot", []string{"migrate", "--store", pgURL, "--postgres-mode", "wal", "--wal-slot", "Slot-1"}, nil, `--wal-slot (OUTBOX_WAL_SLOT): "Slot-1" is not a replication slot name`},
		{"bad wal publication", []string{"migrate", "--print-sql", "--postgres-mode", "wal", "--wal-publication", "a b"}, nil, "--wal-publication (OUTBOX_WAL_PUBLICATION): "},
		{"bad replication URL", []string{"status", "--store", pgURL, "--postgres-mode", "wal", "--wal-replication-url", "postgres://u:" + secret + "@h:port/db"}, nil, "--wal-replication-url (OUTBOX_WAL_REPLICATION_URL): is not a valid"},
		{"negative lag alarm", []string{"status", "--store", pgURL, "--postgres-mode", "wal", "--wal-lag-alarm", "-1"}, nil, "--wal-lag-alarm (OUTBOX_WAL_LAG_ALARM): is negative"},
		{"lag alarm not a number", []string{"status", "--store", pgURL, "--postgres-mode", "wal", "--wal-lag-alarm", "1GiB"}, nil, "--wal-lag-alarm (OUTBOX_WAL_LAG_ALARM): not an integer"},
		{"empty postgres mode", []string{"status", "--store", pgURL, "--postgres-mode", ""}, nil, "--postgres-mode (OUTBOX_POSTGRES_MODE): is empty"},
		{"drop slot in table mode", []string{"migrate", "--store", pgURL, "--drop-slot"}, nil, "--drop-slot: there is a replication slot only in WAL mode"},
		{"drop slot with print-sql", []string{"migrate", "--postgres-mode", "wal", "--drop-slot", "--print-sql"}, nil, "--drop-slot and --print-sql exclude each other"},
		{"print-sql for mongo", []string{"migrate", "--print-sql", "--store", "mongodb://h/app"}, nil, "has no SQL"},
		{"bench unknown", []string{"bench", "--only", "pulsar"}, nil, `unknown benchmark "pulsar"`},
		{"bench postgres without store", []string{"bench", "--only", "postgres-drain"}, nil, "needs --store"},
		{"bench sqlite store", []string{"bench", "--store", "sqlite:x.db"}, nil, "need a postgres:// URL"},
		{"bench sqs without endpoint", []string{"bench", "--only", "sqs"}, nil, "needs --sqs-endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.vars, tt.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
				t.Errorf("stderr %q, want exactly one line", stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tt.want)
			}
			if strings.Contains(stderr, secret) {
				t.Errorf("stderr shows a secret: %q", stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"-h"},
		{"relay", "--help"}, {"migrate", "-h"}, {"status", "--help"}, {"bench", "--help"},
		{"dead", "--help"}, {"dead", "list", "--help"}, {"dead", "requeue", "--help"}, {"dead", "purge", "--help"},
		{"help", "relay"}, {"help", "status"}, {"version", "--help"},
	} {
		code, stdout, stderr := runCLI(t, map[string]string{"OUTBOX_STORE": "postgres://u:hidden@h/db"}, args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage") {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want 0 and usage on stdout", args, code, stderr, stdout)
		}
		if strings.Contains(stdout, "hidden") {
			t.Errorf("%v: help shows the environment's store URL", args)
		}
	}
	_, relayHelp, _ := runCLI(t, nil, "relay", "--help")
	if _, viaHelp, _ := runCLI(t, nil, "help", "relay"); viaHelp != relayHelp {
		t.Errorf("outbox help relay printed something else than outbox relay --help")
	}
	_, stdout, _ := runCLI(t, nil, "relay", "--help")
	for _, want := range []string{"--store", "OUTBOX_STORE", "OUTBOX_SQS_SECRET_ACCESS_KEY", "-sqs-queue-url", "-unordered", "-listen",
		"-kafka-brokers", "OUTBOX_KAFKA_SASL_PASSWORD", "-nats-url", "OUTBOX_NATS_NKEY_SEED", "-rabbitmq-url", "OUTBOX_RABBITMQ_KEY_PASSWORD"} {
		if !strings.Contains(stdout, strings.TrimPrefix(want, "-")) {
			t.Errorf("relay help lacks %q", want)
		}
	}
	for _, want := range []string{"\nStore flags:\n", "\nPostgreSQL WAL mode flags", "\nNATS transport flags:\n", "\nKafka transport flags:\n", "only that transport's flags"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("relay help lacks the group %q", want)
		}
	}
}

// With a transport chosen, relay --help lists its flags and credentials and no other
// transport's, whether --transport comes before --help, after it, or from the environment.
func TestHelpOfOneTransport(t *testing.T) {
	for _, tc := range []struct {
		vars map[string]string
		args []string
	}{
		{nil, []string{"relay", "--transport", "nats", "--help"}},
		{nil, []string{"relay", "--help", "--transport=nats"}},
		{map[string]string{"OUTBOX_TRANSPORT": "nats"}, []string{"relay", "--help"}},
	} {
		code, stdout, _ := runCLI(t, tc.vars, tc.args...)
		if code != 0 {
			t.Errorf("%v: exit %d", tc.args, code)
		}
		for _, want := range []string{"--nats-url", "OUTBOX_NATS_NKEY_SEED", "--store", "--batch-size", "--transport"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%v (env %v): help lacks %q", tc.args, tc.vars, want)
			}
		}
		for _, other := range []string{"--kafka-brokers", "--sqs-queue-url", "--rabbitmq-url", "only that transport's flags"} {
			if strings.Contains(stdout, other) {
				t.Errorf("%v (env %v): help shows %q", tc.args, tc.vars, other)
			}
		}
		_, secrets, _ := strings.Cut(stdout, "From the environment only")
		if !strings.Contains(secrets, "OUTBOX_NATS_PASSWORD") || strings.Contains(secrets, "KAFKA") || strings.Contains(secrets, "SQS") {
			t.Errorf("%v (env %v): the credentials line reads %q, want NATS's only", tc.args, tc.vars, secrets)
		}
	}
}

// outbox version and --version name the command's module version and Go's, on stdout.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runCLI(t, nil, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "outbox ") || !strings.Contains(stdout, runtime.Version()) {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", args, code, stderr, stdout)
		}
	}
	if code, _, stderr := runCLI(t, nil, "version", "extra"); code != 2 || !strings.Contains(stderr, "unexpected argument") {
		t.Errorf("version extra: exit %d, stderr %q", code, stderr)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"relay", "migrate", "status", "dead", "bench", "version"}
	for in, want := range map[string]string{"rleay": "relay", "relya": "relay", "migarte": "migrate", "stat": "status", "dea": "dead", "deploy": "", "x": "", "postgres://u:p@h": ""} {
		if got := suggest(in, names); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRuntimeFailureExitsOne(t *testing.T) {
	// Nothing listens on port 1: connecting fails at run time, not in parsing.
	code, _, stderr := runCLI(t, nil, "status", "--store", "postgres://app:pa55word@127.0.0.1:1/db?connect_timeout=2")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stderr %q)", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "outbox status: open store postgres://app:xxxxx@127.0.0.1:1/db") {
		t.Errorf("stderr %q, want one line naming the redacted store", stderr)
	}
	if strings.Contains(stderr, "pa55word") {
		t.Errorf("stderr shows the password: %q", stderr)
	}
}

func TestPrintSQLConnectsToNothing(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "--print-sql"}, `CREATE TABLE IF NOT EXISTS "public"."outbox"`},
		{[]string{"migrate", "--print-sql", "--schema", "app", "--table", "events"}, `CREATE TABLE IF NOT EXISTS "app"."events"`},
		// Port 1 has no server: the URL only picks the dialect.
		{[]string{"migrate", "--print-sql", "--store", "postgres://u:p@127.0.0.1:1/db", "--table", "events"}, `"public"."events"`},
		{[]string{"migrate", "--print-sql", "--store", "sqlite:/nonexistent/dir/x.db"}, `CREATE TABLE IF NOT EXISTS "outbox"`},
		{[]string{"migrate", "--print-sql", "--postgres-mode", "wal", "--schema", "app"}, `SELECT pg_create_logical_replication_slot('outbox_app_outbox', 'pgoutput');`},
		{[]string{"migrate", "--print-sql", "--store", "postgres://u:p@127.0.0.1:1/db", "--postgres-mode", "wal", "--wal-slot", "orders", "--wal-publication", "orders_pub"}, `CREATE PUBLICATION "orders_pub";`},
	}
	for _, tt := range tests {
		code, stdout, stderr := runCLI(t, nil, tt.args...)
		if code != 0 || !strings.Contains(stdout, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, stdout lacks %q:\n%s", tt.args, code, stderr, tt.want, stdout)
		}
	}
}

// With no region in the flags or the AWS environment, building the SQS transport fails: a
// usage error, found before the store is opened.
func TestMissingRegionIsAUsageError(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	code, _, stderr := runCLI(t, nil, "relay", "--store", "postgres://u:p@127.0.0.1:1/db", "--sqs-queue-url", "orders", "--listen", "off")
	if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--sqs-region (OUTBOX_SQS_REGION): is empty") {
		t.Fatalf("exit %d, stderr %q; want 2 and one line naming Region", code, stderr)
	}
}

// failingWriter fails every write, as a full disk or a closed pipe does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// Output that cannot be written fails the command: exit 1 and the reason on stderr, rather
// than a silent success with nothing printed.
func TestOutputWriteErrorFailsTheCommand(t *testing.T) {
	var stderr bytes.Buffer
	e := &env{stdout: failingWriter{}, stderr: &stderr, getenv: func(string) string { return "" }}
	if code := run(context.Background(), e, []string{"version"}); code != 1 || !strings.Contains(stderr.String(), "writing the output: no space left on device") {
		t.Fatalf("version to a failing stdout: exit %d, stderr %q; want 1 and the write error", code, stderr.String())
	}
}
