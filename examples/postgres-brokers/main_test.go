package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/txoutbox/outbox/outboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Bad or missing setup is a setup error (exit 2) naming what to set.
func TestSetupErrors(t *testing.T) {
	pg := map[string]string{"OUTBOX_POSTGRES_URL": "postgres://x"}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "OUTBOX_POSTGRES_URL and -transport not set"},
		{[]string{"-transport", "nats"}, nil, "OUTBOX_POSTGRES_URL not set"},
		{[]string{"-transport", "sqs"}, pg, `-transport "sqs" is not kafka, nats or rabbitmq`},
		{[]string{"-transport", "kafka"}, pg, "OUTBOX_KAFKA_BROKERS (or -kafka-fake) not set"},
		{[]string{"-transport", "rabbitmq"}, pg, "OUTBOX_RABBITMQ_URL not set"},
		{[]string{"-transport", "nats", "-kafka-fake"}, pg, "-kafka-fake goes with -transport kafka only"},
		{[]string{"-transport", "kafka", "-kafka-fake"}, map[string]string{"OUTBOX_POSTGRES_URL": "postgres://x", "OUTBOX_KAFKA_BROKERS": "b:9092"}, "not both"},
		{[]string{"-transport", "nats", "extra"}, pg, `unexpected argument "extra"`},
		{[]string{"-brokers"}, pg, "flag provided but not defined: -brokers"},
	} {
		err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, io.Discard)
		if !isMissing(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("run %v with %v: %v, want a setup error containing %q", tt.args, tt.env, err, tt.want)
		}
	}
}

func randomName(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// schema gives the test a schema of its own in PostgreSQL, dropped at the end, or skips (fails
// in CI) without PostgreSQL.
func schema(t *testing.T) (url, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url = outboxtest.ServiceAddr("OUTBOX_TEST_POSTGRES_URL", "postgres://root@127.0.0.1:5432/test")
	admin, err := pgxpool.New(ctx, url)
	if err == nil {
		err = admin.Ping(ctx)
	}
	if err != nil {
		outboxtest.NeedService(t, "PostgreSQL at "+url, err)
	}
	name = randomName("example_pgbrokers_")
	t.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return url, name
}

// The whole loop against each broker: three users committed with their events, relayed, and
// received by the transport's consumer with the user rows as results.
func TestExample(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		setup func(t *testing.T) map[string]string // the broker's variables, or a skip
	}{
		{"kafka-fake", []string{"-transport", "kafka", "-kafka-fake"}, func(*testing.T) map[string]string {
			return map[string]string{"OUTBOX_KAFKA_TOPIC": randomName("users-")}
		}},
		{"nats", []string{"-transport", "nats"}, natsStream},
		{"rabbitmq", []string{"-transport", "rabbitmq"}, rabbitQueue},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pgURL, pgSchema := schema(t)
			vars := tt.setup(t)
			vars["OUTBOX_POSTGRES_URL"], vars["OUTBOX_POSTGRES_SCHEMA"] = pgURL, pgSchema
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out strings.Builder
			if err := run(ctx, tt.args, func(k string) string { return vars[k] }, &out); err != nil {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			checkOutput(t, out.String())
		})
	}
}

var gotLine = regexp.MustCompile(`(?m)^consumer got USER_CREATED (\S+) \(key (\S+)\): (.*)$`)

// checkOutput wants each user's event received once, with its key and its row as result.
func checkOutput(t *testing.T, out string) {
	t.Helper()
	got := map[string]User{}
	for _, m := range gotLine.FindAllStringSubmatch(out, -1) {
		var u User
		if err := json.Unmarshal([]byte(m[3]), &u); err != nil || u.ID == 0 || m[2] != u.Email {
			t.Errorf("line %q: result %v, key %s", m[0], err, m[2])
		}
		if _, dup := got[u.Name]; dup {
			t.Errorf("%s received twice", u.Name)
		}
		got[u.Name] = u
	}
	for _, name := range []string{"ada", "grace", "edsger"} {
		if got[name].Email != name+"@example.com" {
			t.Errorf("no USER_CREATED event for %s", name)
		}
	}
	if !strings.Contains(out, "relay published 3 events to ") || t.Failed() {
		t.Errorf("output:\n%s", out)
	}
}

// natsStream names a stream of the test's own on the machine's NATS server, deleted at the end
// (the example creates it).
func natsStream(t *testing.T) map[string]string {
	url := outboxtest.ServiceAddr("OUTBOX_TEST_NATS_URL", "nats://127.0.0.1:4222")
	nc, err := natsgo.Connect(url, natsgo.Timeout(5*time.Second))
	if err != nil {
		outboxtest.NeedService(t, "NATS at "+url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := strings.ToUpper(randomName("EXAMPLE_"))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})
	return map[string]string{"OUTBOX_NATS_URL": url, "OUTBOX_NATS_STREAM": stream}
}

// rabbitQueue names a queue of the test's own on the machine's RabbitMQ, deleted at the end
// (the example declares it).
func rabbitQueue(t *testing.T) map[string]string {
	url := outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		outboxtest.NeedService(t, "RabbitMQ at "+url, err)
	}
	queue := randomName("example.users.")
	t.Cleanup(func() {
		defer conn.Close()
		ch, err := conn.Channel()
		if err == nil {
			_, err = ch.QueueDelete(queue, false, false, false)
			_ = ch.Close()
		}
		if err != nil {
			t.Errorf("delete queue %s: %v", queue, err)
		}
	})
	return map[string]string{"OUTBOX_RABBITMQ_URL": url, "OUTBOX_RABBITMQ_QUEUE": queue}
}

// The built example exits 2 with one clear line when its setup is missing, and 1 when its
// database cannot be reached, never showing the password.
func TestExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example")
	}
	bin := filepath.Join(t.TempDir(), "postgres-brokers")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{nil, nil, 2, "postgres-brokers: OUTBOX_POSTGRES_URL and -transport not set"},
		{[]string{"-transport", "nats"}, []string{"OUTBOX_POSTGRES_URL=postgres://app:pa55word@127.0.0.1:1/db?connect_timeout=2"}, 1, "postgres-brokers: postgres: connect"},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tt.env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		_ = cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != tt.code || !strings.HasPrefix(stderr.String(), tt.want) ||
			strings.Count(stderr.String(), "\n") != 1 || strings.Contains(stderr.String(), "pa55word") {
			t.Errorf("%v %v: exit %d, stderr %q; want %d and one line starting %q", tt.args, tt.env, code, stderr.String(), tt.code, tt.want)
		}
	}
}
