package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/txoutbox/outbox/outboxtest"
)

// node is a private RabbitMQ node of one test: its own node name, ports, database and logs in
// a temporary directory, so a test can stop, restart or alarm it without touching the shared
// broker.
type node struct {
	name string
	url  string
	dir  string
	env  []string
	ctl  string
	cmd  *exec.Cmd
	exit chan error
}

// rabbitmqBin finds a RabbitMQ script: OUTBOX_TEST_RABBITMQ_BIN names the directory holding
// rabbitmq-server and rabbitmqctl; by default the Debian package's, then PATH. The package's
// /usr/sbin wrappers switch to the rabbitmq user, which a private node's temp dir would not
// suit, so the scripts they wrap come first.
func rabbitmqBin(script string) (string, error) {
	dirs := []string{outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin")}
	for _, d := range dirs {
		p := filepath.Join(d, script)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(script)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNode starts a private node with the given rabbitmq.conf lines and stops it at cleanup.
// It skips the test (fails it in CI) when no RabbitMQ installation is found.
func startNode(t *testing.T, conf ...string) *node {
	t.Helper()
	server, err := rabbitmqBin("rabbitmq-server")
	if err == nil {
		_, err = rabbitmqBin("rabbitmqctl")
	}
	if err != nil {
		outboxtest.NeedService(t, "a RabbitMQ installation (rabbitmq-server, rabbitmqctl) for a private node", err)
	}
	ctl, _ := rabbitmqBin("rabbitmqctl")
	var r [4]byte
	_, _ = rand.Read(r[:])
	dir := t.TempDir()
	port, dist := freePort(t), freePort(t)
	n := &node{
		name: "outboxtest" + hex.EncodeToString(r[:]) + "@localhost",
		url:  fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port),
		dir:  dir, ctl: ctl, exit: make(chan error, 1),
	}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.env = append(os.Environ(),
		"HOME="+dir, // the Erlang cookie of this node and its rabbitmqctl
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
		"RABBITMQ_PID_FILE="+filepath.Join(dir, "node.pid"),
	)
	out, err := os.Create(filepath.Join(dir, "server.out"))
	if err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(server)
	n.cmd.Dir, n.cmd.Env, n.cmd.Stdout, n.cmd.Stderr = dir, n.env, out, out
	if err := n.cmd.Start(); err != nil {
		out.Close()
		outboxtest.NeedService(t, "a private RabbitMQ node", err)
	}
	go func() { n.exit <- n.cmd.Wait(); out.Close() }()
	t.Cleanup(func() { n.stop(t) })

	// await_startup gives up at once while the node has not yet registered its name, so it is
	// asked again until the node answers, exits, or the deadline passes.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := n.rabbitmqctl(30*time.Second, "await_startup", "--timeout", "20")
		if err == nil {
			return n
		}
		exited := false
		select {
		case werr := <-n.exit:
			exited = true
			t.Logf("private RabbitMQ node %s exited: %v", n.name, werr)
			n.exit <- nil // for stop
		default:
		}
		if exited || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "server.out"))
			t.Fatalf("private RabbitMQ node %s did not start (exited: %t): %v\n%s", n.name, exited, err, tail(log, 2000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// rabbitmqctl runs rabbitmqctl against the node.
func (n *node) rabbitmqctl(timeout time.Duration, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.ctl, append([]string{"-n", n.name}, args...)...)
	cmd.Dir, cmd.Env = n.dir, n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl %s: %w: %s", strings.Join(args, " "), err, tail(out, 1000))
	}
	return nil
}

// ctl runs rabbitmqctl against the node and fails the test if it fails.
func (n *node) ctlOrFail(t *testing.T, args ...string) {
	t.Helper()
	if err := n.rabbitmqctl(60*time.Second, args...); err != nil {
		t.Fatal(err)
	}
}

// stop halts the node, killing its own process if it does not stop in time.
func (n *node) stop(t *testing.T) {
	if err := n.rabbitmqctl(30*time.Second, "stop"); err != nil {
		t.Logf("stopping the private node: %v", err)
	}
	select {
	case <-n.exit: //nolint:errcheck // stopped: how the process exited is no finding
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exit //nolint:errcheck // killed: the error only says so
	}
}

// broker returns an admin connection to the node, closed at cleanup.
func (n *node) broker(t *testing.T) *broker {
	t.Helper()
	conn, err := amqp.Dial(n.url)
	if err != nil {
		t.Fatalf("connect to the private node: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{url: n.url, admin: conn}
}
