package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/outbox/transport/kafka"
	"go.uber.org/goleak"
)

// brokersVar points the tests at a real cluster; without it they run on an in-process kfake
// cluster.
const brokersVar = "OUTBOX_TEST_KAFKA_BROKERS"

// shared is the cluster the tests share: a kfake cluster started by TestMain, or the real one.
var shared *cluster

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if shared, err = startCluster(nil); err != nil {
		fmt.Fprintln(os.Stderr, "kafka tests:", err)
		return 1
	}
	code := m.Run()
	shared.close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// cluster is a Kafka cluster the tests create topics on.
type cluster struct {
	brokers []string
	fake    *kfake.Cluster // nil on a real cluster
	admin   *kadm.Client
	adminCl *kgo.Client
	reach   error // why the real cluster did not answer, if it did not
}

// startCluster starts a three-broker kfake cluster with opts, or, without opts, connects to
// the real one named by OUTBOX_TEST_KAFKA_BROKERS when it is set. The admin client
// authenticates with auth when it is not nil.
func startCluster(auth *kafka.SASL, opts ...kfake.Opt) (*cluster, error) {
	c := &cluster{}
	if v := os.Getenv(brokersVar); v != "" && len(opts) == 0 {
		c.brokers = strings.Split(v, ",")
	} else {
		fake, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("start kfake: %w", err)
		}
		c.fake, c.brokers = fake, fake.ListenAddrs()
	}
	// The transport's own client settings, so the admin client connects the same way.
	adminOpts, err := kafka.ClientOptions(kafka.Config{Connection: kafka.Connection{Brokers: c.brokers, SASL: auth}, Topic: "unused"})
	if err != nil {
		c.close()
		return nil, err
	}
	adminCl, err := kgo.NewClient(adminOpts...)
	if err != nil {
		c.close()
		return nil, err
	}
	c.adminCl, c.admin = adminCl, kadm.NewClient(adminCl)
	if c.fake == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, c.reach = c.admin.BrokerMetadata(ctx)
	}
	return c, nil
}

func (c *cluster) close() {
	if c.adminCl != nil {
		c.adminCl.Close()
	}
	if c.fake != nil {
		c.fake.Close()
	}
}

// needCluster returns the shared cluster, or skips (fails in CI) when the real cluster named
// by OUTBOX_TEST_KAFKA_BROKERS does not answer.
func needCluster(t *testing.T) *cluster {
	t.Helper()
	if shared.reach != nil {
		outboxtest.NeedService(t, "Kafka cluster at "+strings.Join(shared.brokers, ","), shared.reach)
	}
	return shared
}

// needFake returns the shared kfake cluster, or skips when the tests run on a real cluster:
// the test needs what only the fake cluster offers (why), usually injected faults.
func needFake(t *testing.T, why string) *cluster {
	t.Helper()
	c := needCluster(t)
	if c.fake == nil {
		t.Skip(why + ", which needs the in-process kfake cluster (" + brokersVar + " is set)")
	}
	return c
}

// topicName returns a topic name unique to this test.
func topicName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 80 {
		name = name[len(name)-80:]
	}
	return "outbox-" + name + "-" + hex.EncodeToString(b[:])
}

// createTopic creates a topic for this test with the given partitions and configs, deleted at
// cleanup.
func (c *cluster) createTopic(t testing.TB, partitions int32, configs map[string]string) string {
	t.Helper()
	name := topicName(t)
	var cfgs map[string]*string
	for k, v := range configs {
		if cfgs == nil {
			cfgs = map[string]*string{}
		}
		cfgs[k] = &v
	}
	ctx := testCtx(t)
	res, err := c.admin.CreateTopic(ctx, partitions, -1, cfgs, name)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.admin.DeleteTopics(ctx, name); err != nil {
			t.Errorf("delete topic %s: %v", name, err)
		}
	})
	return name
}

// newTransport builds a transport on c, closed at cleanup. Unset Brokers take c's.
func (c *cluster) newTransport(t testing.TB, cfg kafka.Config) *kafka.Transport {
	t.Helper()
	if cfg.Brokers == nil {
		cfg.Brokers = c.brokers
	}
	tr, err := kafka.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("kafka.New(context.Background(), %v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// received is one record as a consumer reads it, decoded.
type received struct {
	Rec *kgo.Record
	Msg *outbox.Message
}

// consume reads n records from topics, from their start, until it has them or ctx ends.
func (c *cluster) consume(ctx context.Context, n int, raw bool, topics ...string) ([]received, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	var got []received
	for len(got) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return got, fmt.Errorf("received %d of %d: %w", len(got), n, ctx.Err())
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return got, fmt.Errorf("fetch: %v", errs[0].Err)
		}
		for _, r := range fs.Records() {
			m, err := decode(r, raw)
			if err != nil {
				return got, err
			}
			got = append(got, received{Rec: r, Msg: m})
		}
	}
	return got, nil
}

// consumeExactly reads the n records topics hold, waiting a little longer for any
// record beyond them.
func (c *cluster) consumeExactly(t *testing.T, n int, raw bool, topics ...string) []received {
	t.Helper()
	got, err := c.consume(testCtx(t), n, raw, topics...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	more, err := c.consume(ctx, n+1, raw, topics...)
	if len(more) > n {
		t.Fatalf("topics hold %d records or more, want exactly %d", len(more), n)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	return got
}

// decode reads a record the way a Go consumer would: the envelope (or the raw payload with the
// outbox.id and outbox.type headers), the Key from the record key, other headers as Headers.
func decode(r *kgo.Record, raw bool) (*outbox.Message, error) {
	var m *outbox.Message
	if raw {
		m = &outbox.Message{Payload: json.RawMessage(r.Value)}
	} else {
		var err error
		if m, err = backend.DecodeEnvelope(r.Value); err != nil {
			return nil, err
		}
	}
	m.Key = string(r.Key)
	for _, h := range r.Headers {
		switch h.Key {
		case kafka.HeaderID:
			m.ID = string(h.Value)
		case kafka.HeaderType:
			m.Type = string(h.Value)
		case kafka.HeaderKey:
			if string(h.Value) != m.Key {
				return nil, fmt.Errorf("record key %q, outbox.key header %q", r.Key, h.Value)
			}
		default:
			if m.Headers == nil {
				m.Headers = map[string]string{}
			}
			m.Headers[h.Key] = string(h.Value)
		}
	}
	return m, nil
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// prepared runs backend.Prepare on msgs, as a store's Add does, and returns them.
func prepared(t testing.TB, msgs ...*outbox.Message) []*outbox.Message {
	t.Helper()
	if err := backend.Prepare(context.Background(), msgs, backend.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// messages returns n valid messages of type typ, all with key (which may be empty), with
// payloads {"n":i}.
func messages(n int, typ, key string) []*outbox.Message {
	msgs := make([]*outbox.Message, n)
	for i := range msgs {
		msgs[i] = &outbox.Message{Type: typ, Key: key, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return msgs
}

// partitionOf is the partition the producer's default partitioner picks for key on a topic of n
// partitions.
func partitionOf(key string, n int) int32 {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("any")
	return int32(p.Partition(&kgo.Record{Key: []byte(key)}, n))
}

// batchErr returns err as a *outbox.BatchError, failing the test when it is not one.
func batchErr(t *testing.T, err error) *outbox.BatchError {
	t.Helper()
	var be *outbox.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("publish = %v, want a *outbox.BatchError", err)
	}
	return be
}
