package kafka_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// deleteAtCleanup deletes topics when the test ends.
func (c *cluster) deleteAtCleanup(t *testing.T, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.admin.DeleteTopics(ctx, topics...); err != nil {
			t.Errorf("delete topics %v: %v", topics, err)
		}
	})
}

// Provision creates the transport's topic and its routes' topics with the partitions asked
// for; a second run finds them; the transport then publishes to them and a consumer reads back.
func TestProvisionCreatesTheTopics(t *testing.T) {
	c := needCluster(t)
	main, routed := topicName(t), topicName(t)+"-routed"
	c.deleteAtCleanup(t, main, routed)
	cfg := kafka.Config{Connection: kafka.Connection{Brokers: c.brokers}, Topic: main, Routes: map[string]string{"R": routed}}
	pc := kafka.ProvisionConfig{Transport: cfg, Partitions: 3}

	rep, err := kafka.Provision(testCtx(t), pc)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep.Objects); got != "created topic "+main+"; created topic "+routed {
		t.Fatalf("first run: %s", got)
	}
	if !strings.Contains(rep.Objects[0].String(), "3 partitions") {
		t.Fatalf("line %q: want the partition count", rep.Objects[0].String())
	}
	details, err := c.admin.ListTopics(testCtx(t), main, routed)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{main, routed} {
		if d := details[name]; d.Err != nil || len(d.Partitions) != 3 {
			t.Fatalf("topic %s: %d partitions (err %v), want 3", name, len(d.Partitions), d.Err)
		}
	}

	rep, err = kafka.Provision(testCtx(t), pc)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep.Objects); got != "exists topic "+main+"; exists topic "+routed {
		t.Fatalf("second run: %s", got)
	}

	tr := c.newTransport(t, cfg)
	msgs := append(messages(3, "T", "k"), messages(2, "R", "k")...)
	if err := tr.Publish(testCtx(t), prepared(t, msgs...)); err != nil {
		t.Fatal(err)
	}
	c.consumeExactly(t, 3, false, main)
	c.consumeExactly(t, 2, false, routed)
}

// A topic that exists with another partition count, or a max.message.bytes too small for the
// transport's records, is a conflict: reported, left as it is, and an error wrapping
// ErrConflict that says what differs.
func TestProvisionConflicts(t *testing.T) {
	c := needCluster(t)
	few := c.createTopic(t, 2, nil)
	small := c.createTopic(t, 1, map[string]string{"max.message.bytes": "1000"})

	_, err := kafka.Provision(testCtx(t), kafka.ProvisionConfig{
		Transport: kafka.Config{Connection: kafka.Connection{Brokers: c.brokers}, Topic: few}, Partitions: 3,
	})
	if !errors.Is(err, kafka.ErrConflict) || !strings.Contains(err.Error(), "2 partitions, want 3") {
		t.Fatalf("partitions: err %v, want a conflict naming 2 partitions, want 3", err)
	}
	if d, err := c.admin.ListTopics(testCtx(t), few); err != nil || len(d[few].Partitions) != 2 {
		t.Fatalf("topic %s changed: %+v %v", few, d[few], err)
	}

	rep, err := kafka.Provision(testCtx(t), kafka.ProvisionConfig{
		Transport: kafka.Config{Connection: kafka.Connection{Brokers: c.brokers}, Topic: small},
	})
	if !errors.Is(err, kafka.ErrConflict) || !strings.Contains(err.Error(), "max.message.bytes 1000, below the transport's MaxMessageBytes 1048576") {
		t.Fatalf("max.message.bytes: err %v, want a conflict naming both sizes", err)
	}
	if got := actions(rep.Objects); got != "conflict topic "+small {
		t.Fatalf("report: %s", got)
	}
}

// Plan checks the config without connecting, and says what a Route func's topics need.
func TestProvisionPlan(t *testing.T) {
	route := func(*outbox.Message) string { return "x" }
	base := kafka.Config{Connection: kafka.Connection{Brokers: []string{"127.0.0.1:1"}}}
	for _, tc := range []struct {
		name string
		pc   kafka.ProvisionConfig
		want string
	}{
		{"no topics", kafka.ProvisionConfig{Transport: withRoute(base, route)}, "give the topics its Route picks"},
		{"bad topic", kafka.ProvisionConfig{Transport: withRoute(base, route), Topics: []string{"a b"}}, "Topics"},
		{"partitions", kafka.ProvisionConfig{Transport: withTopic(base, "t"), Partitions: -2}, "Partitions is below -1"},
		{"replication", kafka.ProvisionConfig{Transport: withTopic(base, "t"), ReplicationFactor: -2}, "ReplicationFactor is below -1"},
	} {
		_, err := tc.pc.Plan()
		if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a config error naming %q", tc.name, err, tc.want)
		}
	}
	p, err := kafka.ProvisionConfig{Transport: withTopic(base, "orders"), Topics: []string{"orders", "audit"}}.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Topics) != 2 || p.Topics[0].Name != "orders" || p.Topics[1].Name != "audit" ||
		p.Topics[0].Partitions != -1 || p.Topics[0].ReplicationFactor != -1 || p.Topics[0].Configs["max.message.bytes"] != "1048576" {
		t.Fatalf("plan %+v: want orders then audit, the brokers' defaults and the transport's max.message.bytes", p)
	}
}

// Brokers that do not answer are an outage, reported within the caller's deadline.
func TestProvisionUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := kafka.Provision(ctx, kafka.ProvisionConfig{Transport: kafka.Config{
		Connection: kafka.Connection{Brokers: []string{"127.0.0.1:1"}, DialTimeout: 200 * time.Millisecond}, Topic: "t",
	}})
	if !outbox.IsUnavailable(err) {
		t.Fatalf("Provision against a closed port: %v, want an outage", err)
	}
}

func withTopic(c kafka.Config, topic string) kafka.Config { c.Topic = topic; return c }

func withRoute(c kafka.Config, route func(*outbox.Message) string) kafka.Config {
	c.Route = route
	return c
}

// actions is the report as "created topic a; exists topic b".
func actions(objs []kafka.ProvisionObject) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.Action+" "+o.Kind+" "+o.Name)
	}
	return strings.Join(s, "; ")
}
