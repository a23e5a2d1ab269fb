package main

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Each secret marker below may appear in an argument, a variable or a URL; none may ever show
// in what the command prints: errors, help, output or logs.
var cliSecrets = []string{"pw-url", "pw-query", "sslpw-query", "kv-pw", "aws-tok", "tls-key-pw", "sqs-secret-key", "sqs-session-tok", "typed-secret", "odd-param-val"}

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range cliSecrets {
		if strings.Contains(text, s) {
			t.Errorf("%s shows secret %q: %s", what, s, text)
		}
	}
}

func TestCommandNeverShowsSecrets(t *testing.T) {
	pgURL := "postgres://app:pw-url@127.0.0.1:1/db?sslmode=disable&password=pw-query&sslpassword=sslpw-query&odd_param=odd-param-val&connect_timeout=2"
	mongoAWS := "mongodb://AKID:pw-url@127.0.0.1:1/app?authMechanism=MONGODB-AWS&authSource=$external&authMechanismProperties=AWS_SESSION_TOKEN:aws-tok&serverSelectionTimeoutMS=200"
	mongoTLS := "mongodb://127.0.0.1:1/app?tls=true&tlsCertificateKeyFile=/nonexistent.pem&tlsCertificateKeyFilePassword=tls-key-pw&serverSelectionTimeoutMS=200"
	sqsCreds := map[string]string{"OUTBOX_SQS_ACCESS_KEY_ID": "AKID", "OUTBOX_SQS_SECRET_ACCESS_KEY": "sqs-secret-key", "OUTBOX_SQS_SESSION_TOKEN": "sqs-session-tok"}
	withStore := func(store string, more map[string]string) map[string]string {
		vars := map[string]string{"OUTBOX_STORE": store}
		for k, v := range more {
			vars[k] = v
		}
		return vars
	}
	for _, tt := range []struct {
		name string
		args []string
		vars map[string]string
	}{
		{"URL as a stray argument", []string{"status", "--store", "sqlite:x.db", pgURL}, nil},
		{"URL as the command", []string{pgURL}, nil},
		{"URL as a dead subcommand", []string{"dead", pgURL}, nil},
		{"URL as a flag", []string{"relay", "-" + pgURL}, nil},
		{"misspelt flag with a URL", []string{"status", "--stor=" + pgURL}, nil},
		{"URL in the wrong flag", []string{"relay", "--lease", pgURL}, nil},
		{"URL in a boolean flag", []string{"relay", "--unordered=" + pgURL}, nil},
		{"secret in a bad ID", []string{"dead", "list", "--store", "sqlite:x.db", "--id", "typed-secret"}, nil},
		{"secret in a variable that does not parse", []string{"relay", "--store", "sqlite:x.db"}, map[string]string{"OUTBOX_BATCH_SIZE": "typed-secret"}},
		{"postgres URL, runtime failure", []string{"status"}, withStore(pgURL, nil)},
		{"postgres URL, bad table", []string{"migrate", "--table", "a-b"}, withStore(pgURL, nil)},
		{"postgres URL, mongodb flag", []string{"status", "--collection", "c"}, withStore(pgURL, nil)},
		{"postgres key=value string", []string{"status"}, withStore("host=127.0.0.1 port=1 password=kv-pw", nil)},
		{"unknown scheme", []string{"status"}, withStore("mysql://app:pw-url@h/db?password=pw-query", nil)},
		{"mongodb AWS session token, runtime failure", []string{"status"}, withStore(mongoAWS, nil)},
		{"mongodb TLS key password, runtime failure", []string{"dead", "list"}, withStore(mongoTLS, nil)},
		{"sqlite query", []string{"status", "--store", "sqlite:/nonexistent/dir/x.db?_pragma=key(typed-secret)"}, nil},
		{"replication URL, runtime failure", []string{"status", "--postgres-mode", "wal", "--wal-replication-url", pgURL}, withStore(pgURL, nil)},
		{"replication URL, bad slot", []string{"migrate", "--postgres-mode", "wal", "--wal-slot", "Bad", "--wal-replication-url", pgURL}, withStore(pgURL, nil)},
		{"replication URL in table mode", []string{"relay", "--transport", "memory", "--wal-replication-url", pgURL}, withStore(pgURL, nil)},
		{"sqs credentials, bad queue", []string{"relay", "--sqs-queue-url", "ftp://q"}, withStore(pgURL, sqsCreds)},
		{"sqs credentials, bad endpoint", []string{"relay", "--sqs-queue-url", "q", "--sqs-endpoint", "127.0.0.1:1/?token=typed-secret"}, withStore(pgURL, sqsCreds)},
		{"sqs credentials, runtime failure", []string{"relay", "--sqs-queue-url", "q", "--sqs-endpoint", "http://127.0.0.1:1", "--sqs-region", "local", "--listen", "off"}, withStore(pgURL, sqsCreds)},
		{"sqs half credentials", []string{"relay", "--sqs-queue-url", "q"}, withStore(pgURL, map[string]string{"OUTBOX_SQS_SECRET_ACCESS_KEY": "sqs-secret-key"})},
		{"bench with a store URL", []string{"bench", "--only", "postgres-write"}, withStore(pgURL, nil)},
		{"help with secrets around", []string{"relay", "--help"}, withStore(pgURL, sqsCreds)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.vars, tt.args...)
			if code == 0 && tt.args[len(tt.args)-1] != "--help" {
				t.Errorf("exit 0 (stderr %q)", stderr)
			}
			assertNoSecret(t, "stdout", stdout)
			assertNoSecret(t, "stderr", stderr)
		})
	}
}

// The relay's logs ("relay running" names the store and the transport) and the outputs of
// status and migrate show the store URL redacted, against the real PostgreSQL, which accepts
// any password from loopback.
func TestRelayLogsNeverShowSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	schema := pgSchema(t, ctx)
	u, err := url.Parse(postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "pw-url")
	q := u.Query()
	q.Set("sslpassword", "sslpw-query")
	// options goes to the server, so the session must accept it; %20, as pgx reads + literally.
	u.RawQuery = q.Encode() + "&options=-c%20application_name%3Dodd-param-val"
	store := u.String()
	vars := map[string]string{"OUTBOX_STORE": store, "OUTBOX_SCHEMA": schema}

	for _, args := range [][]string{{"migrate"}, {"status"}, {"status", "--json"}, {"dead", "list"}} {
		code, stdout, stderr := runCLI(t, vars, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		if args[0] != "dead" && !strings.Contains(stdout+stderr, "xxxxx") {
			t.Errorf("%v: output names no redacted store: %s", args, stdout)
		}
		assertNoSecret(t, strings.Join(args, " ")+" stdout", stdout)
		assertNoSecret(t, strings.Join(args, " ")+" stderr", stderr)
	}

	var stdout, stderr syncBuffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan int, 1)
	go func() {
		done <- run(runCtx, e, []string{"relay", "--transport", "memory", "--listen", "off", "--log-level", "debug"})
	}()
	for !strings.Contains(stderr.String(), "relay running") {
		select {
		case code := <-done:
			t.Fatalf("relay exited %d: %s", code, stderr.String())
		case <-ctx.Done():
			t.Fatalf("the relay never logged that it runs: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("relay exited %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "xxxxx") {
		t.Errorf("the logs name no redacted store: %s", stderr.String())
	}
	assertNoSecret(t, "relay logs", stderr.String())
	assertNoSecret(t, "relay stdout", stdout.String())
}
