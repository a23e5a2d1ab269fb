//go:build torture

package torture

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/nats"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

// brokerDowntime is how long a restarted broker stays down.
const brokerDowntime = 2 * time.Second

// privateBroker is a NATS or RabbitMQ server of one scenario's own, on free ports with its data
// in a temporary directory: the scenario restarts it, which it must never do to the machine's
// shared servers. Each lane gets its own stream or queue on it.
type privateBroker interface {
	// destination creates the lane's stream or queue and returns the relayproc flags that
	// publish to it.
	destination(t *testing.T, ln *lane) []string
	// consume starts reading the lane's stream or queue back.
	consume(ln *lane) *consumer
	// restart takes the broker down for brokerDowntime and brings it back; i counts the
	// restarts from 0. It runs in a goroutine of its own: it reports by its error.
	restart(i int) error
	// kind names the broker and how it is restarted, for the logs.
	kind() string
}

// startBroker starts the private broker a scenario asks for, or returns nil for SQS.
func startBroker(t *testing.T, kind string) privateBroker {
	t.Helper()
	switch kind {
	case "":
		return nil
	case "nats":
		return startNATS(t)
	case "rabbitmq":
		return startRabbitMQ(t)
	}
	t.Fatalf("unknown broker %q", kind)
	return nil
}

// restartBroker restarts the broker n times, evenly spread over the d after start.
func restartBroker(t *testing.T, ctx context.Context, b privateBroker, n int, start time.Time, d time.Duration) {
	for i := range n {
		if !sleep(ctx, time.Until(start.Add(d*time.Duration(i+1)/time.Duration(n+1)))) {
			return
		}
		began := time.Now()
		if err := b.restart(i); err != nil {
			t.Errorf("restart %d of the %s: %v", i+1, b.kind(), err)
			return
		}
		t.Logf("restart %d of the %s: back after %v", i+1, b.kind(), time.Since(began).Round(time.Millisecond))
	}
}

// newBrokerConsumer is a consumer fed by a reader of a broker other than SQS.
func newBrokerConsumer(read func(ctx context.Context, c *consumer)) *consumer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{seen: map[string]bool{}, distinct: map[string]bool{}, cancel: cancel}
	c.wg.Go(func() { read(ctx, c) })
	return c
}

// record adds one message as a broker handed it over, with the Key from its header. brokerID,
// when not empty, is the broker's own identity of the message (a stream sequence): the broker
// handing it over again is a redelivery, not a duplicate. redelivered is the broker saying
// that it may have handed this very message over before (AMQP's redelivered flag): then an
// envelope already recorded is a redelivery too.
func (c *consumer) record(brokerID string, redelivered bool, body []byte, key string, sent time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if brokerID != "" {
		if c.seen[brokerID] {
			c.redelivered++
			return
		}
		c.seen[brokerID] = true
	}
	msg, err := backend.DecodeEnvelope(body)
	if err != nil {
		c.bad = append(c.bad, fmt.Sprintf("%v: %.200s", err, body))
		return
	}
	if redelivered && c.distinct[msg.ID] {
		c.redelivered++
		return
	}
	msg.Key = key
	// No message groups here: the Key stands for one, so the checker's group test is its Key test.
	c.deliveries = append(c.deliveries, delivery{msg: msg, group: key, at: time.Now(), sent: sent})
	c.distinct[msg.ID] = true
}

// natsServer is a private nats-server with JetStream, storing to a directory of its own.
// Restarts keep its port and its store.
type natsServer struct {
	bin, url string
	args     []string
	logPath  string
	nc       *natsgo.Conn // the admin connection, reconnecting across restarts
	js       jetstream.JetStream

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nats-server"); err != nil {
			outboxtest.NeedService(t, "the nats-server binary, for a private server", err)
		}
	}
	dir := t.TempDir()
	port := freePort(t)
	s := &natsServer{bin: bin, url: "nats://127.0.0.1:" + strconv.Itoa(port), logPath: filepath.Join(dir, "nats-server.log"),
		args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "jetstream")}}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
	})
	s.nc, err = natsgo.Connect(s.url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to the private nats-server: %v", err)
	}
	t.Cleanup(s.nc.Close)
	if s.js, err = jetstream.New(s.nc); err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs the server and waits until it accepts connections.
func (s *natsServer) start() error {
	log, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start nats-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "nats://"), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("nats-server exited at start: %s", tail(s.logPath))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server did not listen within 15s: %s", tail(s.logPath))
		}
	}
}

// stop signals the server (SIGTERM: a clean shutdown that flushes the store; SIGKILL: a crash)
// and waits until it exited.
func (s *natsServer) stop(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("nats-server did not exit within 20s of %v", sig)
	}
}

// restart alternates a clean shutdown and a crash (SIGKILL): JetStream writes each message to
// its file before the PubAck, so a crash of the process loses nothing acknowledged.
func (s *natsServer) restart(i int) error {
	sig := syscall.SIGTERM
	if i%2 == 1 {
		sig = syscall.SIGKILL
	}
	if err := s.stop(sig); err != nil {
		return err
	}
	time.Sleep(brokerDowntime) // the outage itself: its length is the scenario, not a wait for a condition
	return s.start()
}

func (s *natsServer) kind() string {
	return "private nats-server (SIGTERM and SIGKILL in turn, " + brokerDowntime.String() + " down)"
}

// destination creates the lane's stream, on file storage so that it survives the restarts,
// capturing <queueName>.>.
func (s *natsServer) destination(t *testing.T, ln *lane) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The default duplicate window (2 minutes) far exceeds the relays' 3 s lease.
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: ln.queueName, Subjects: []string{ln.queueName + ".>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream %s: %v", ln.queueName, err)
	}
	return []string{"-transport", "nats", "-nats-url", s.url, "-nats-subject", ln.queueName + ".{type}", "-nats-stream", ln.queueName}
}

// consume reads the lane's stream message by message, in stream order, by sequence: what
// the stream holds, each message once, whatever the restarts do to consumers.
func (s *natsServer) consume(ln *lane) *consumer {
	name := ln.queueName
	return newBrokerConsumer(func(ctx context.Context, c *consumer) {
		seq := uint64(1)
		for ctx.Err() == nil {
			callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			m, err := s.getMsg(callCtx, name, seq)
			cancel()
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound):
				// Not stored yet, unless the stream already held later messages when this one
				// was asked for again: then it lost it.
				callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				last, err := s.lastSeq(callCtx, name)
				if err == nil && last >= seq {
					_, err = s.getMsg(callCtx, name, seq)
				}
				cancel()
				switch {
				case last < seq && err == nil:
					sleep(ctx, 20*time.Millisecond)
				case errors.Is(err, jetstream.ErrMsgNotFound):
					c.mu.Lock()
					c.bad = append(c.bad, fmt.Sprintf("stream sequence %d is missing (last %d)", seq, last))
					c.mu.Unlock()
					seq++
				case err != nil:
					c.failed(ctx, err)
				}
				// Found on the second asking: the next turn records it.
			case err != nil:
				c.failed(ctx, err)
			default:
				c.record(fmt.Sprint(seq), false, m.Data, m.Header.Get(nats.HeaderKey), m.Time)
				seq++
			}
		}
	})
}

func (s *natsServer) getMsg(ctx context.Context, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return st.GetMsg(ctx, seq)
}

func (s *natsServer) lastSeq(ctx context.Context, stream string) (uint64, error) {
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// rabbitNode is a private RabbitMQ node: its own node name, ports, database and logs in a
// temporary directory, started the way transport/rabbitmq's fault tests start theirs.
type rabbitNode struct {
	name, url, dir, ctl string
	env                 []string
	cmd                 *exec.Cmd
	exit                chan error
}

// rabbitmqBin finds a RabbitMQ script: OUTBOX_TEST_RABBITMQ_BIN names the directory holding
// rabbitmq-server and rabbitmqctl; by default the Debian package's, then PATH. The package's
// /usr/sbin wrappers switch to the rabbitmq user, which the node's temporary directory would
// not suit, so the scripts they wrap come first.
func rabbitmqBin(script string) (string, error) {
	p := filepath.Join(outboxtest.ServiceAddr("OUTBOX_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"), script)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return exec.LookPath(script)
}

func startRabbitMQ(t *testing.T) *rabbitNode {
	t.Helper()
	server, err := rabbitmqBin("rabbitmq-server")
	ctl, ctlErr := rabbitmqBin("rabbitmqctl")
	if err = errors.Join(err, ctlErr); err != nil {
		outboxtest.NeedService(t, "a RabbitMQ installation (rabbitmq-server, rabbitmqctl) for a private node", err)
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	dir := t.TempDir()
	port, dist := freePort(t), freePort(t)
	n := &rabbitNode{name: "outboxtorture" + hex.EncodeToString(r[:]) + "@localhost", url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port),
		dir: dir, ctl: ctl, exit: make(chan error, 1)}
	for file, content := range map[string]string{"enabled_plugins": "[].\n", "rabbitmq.conf": "\n"} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
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
	if err := n.awaitStartup(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	return n
}

// awaitStartup asks the node until it answers: await_startup gives up at once while the node
// has not yet registered its name.
func (n *rabbitNode) awaitStartup(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := n.rabbitmqctl(30*time.Second, "await_startup", "--timeout", "20")
		if err == nil {
			return nil
		}
		select {
		case exitErr := <-n.exit:
			n.exit <- exitErr // for stop
			return fmt.Errorf("private RabbitMQ node %s exited at start (%v): %s", n.name, exitErr, tail(filepath.Join(n.dir, "server.out")))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("private RabbitMQ node %s did not start within %v: %v: %s", n.name, timeout, err, tail(filepath.Join(n.dir, "server.out")))
		}
		time.Sleep(200 * time.Millisecond) // rabbitmqctl itself takes far longer than this
	}
}

func (n *rabbitNode) rabbitmqctl(timeout time.Duration, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.ctl, append([]string{"-n", n.name}, args...)...)
	cmd.Dir, cmd.Env = n.dir, n.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmqctl %s: %w: %.1000s", strings.Join(args, " "), err, out)
	}
	return nil
}

// stop halts the node, killing it if it does not stop in time.
func (n *rabbitNode) stop(t *testing.T) {
	if err := n.rabbitmqctl(30*time.Second, "stop"); err != nil {
		t.Logf("stopping the private RabbitMQ node: %v", err)
	}
	select {
	case <-n.exit: //nolint:errcheck // stopped: how the process exited is no finding
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.exit //nolint:errcheck // killed: the error only says so
	}
}

// restart stops the RabbitMQ application and starts it again, the node (the Erlang VM) staying
// up: every connection is closed, the durable queues stop and recover their persistent
// messages from disk.
func (n *rabbitNode) restart(int) error {
	if err := n.rabbitmqctl(60*time.Second, "stop_app"); err != nil {
		return err
	}
	time.Sleep(brokerDowntime) // the outage itself: its length is the scenario, not a wait for a condition
	return n.rabbitmqctl(60*time.Second, "start_app")
}

func (n *rabbitNode) kind() string {
	return "private RabbitMQ node (rabbitmqctl stop_app, " + brokerDowntime.String() + " down, start_app)"
}

// destination declares the lane's queue: durable, so that it and its persistent messages
// survive the restarts. The relays publish to it through the default exchange.
func (n *rabbitNode) destination(t *testing.T, ln *lane) []string {
	t.Helper()
	conn, err := amqp.Dial(n.url)
	if err != nil {
		t.Fatalf("connect to the private RabbitMQ node: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err == nil {
		_, err = ch.QueueDeclare(ln.queueName, true, false, false, false, nil)
	}
	if err != nil {
		t.Fatalf("declare queue %s: %v", ln.queueName, err)
	}
	return []string{"-transport", "rabbitmq", "-rabbitmq-url", n.url, "-rabbitmq-queue", ln.queueName}
}

// consume reads the lane's queue as its only consumer (exclusive), acknowledging each message
// once recorded, and connects again whenever the broker goes away. A single consumer gets the
// queue in its order, the messages that were unacknowledged when the connection dropped
// included: they go back to their places and come again flagged redelivered.
func (n *rabbitNode) consume(ln *lane) *consumer {
	queue := ln.queueName
	return newBrokerConsumer(func(ctx context.Context, c *consumer) {
		for ctx.Err() == nil {
			if err := n.receive(ctx, c, queue); err != nil {
				c.failed(ctx, err)
			}
		}
	})
}

// receive consumes on one connection until it drops or ctx ends.
func (n *rabbitNode) receive(ctx context.Context, c *consumer, queue string) error {
	conn, err := amqp.DialConfig(n.url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second), Heartbeat: 2 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(100, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(queue, "", false, true, false, false, nil)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("rabbitmq: the broker closed the consumer's channel")
			}
			key, _ := d.Headers[rabbitmq.HeaderKey].(string)
			c.record("", d.Redelivered, d.Body, key, d.Timestamp)
			if err := d.Ack(false); err != nil {
				return err
			}
		}
	}
}
