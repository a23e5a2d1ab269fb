package kafka_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/kafka"
)

// A refused offset commit stays pending and is committed later, even though no further record
// arrives on the partition.
func TestConsumerRetriesFailedCommit(t *testing.T) {
	c := needFake(t, faults)
	topic := c.createTopic(t, 1, nil)
	tr := c.newTransport(t, kafka.Config{Topic: topic})
	group := topicName(t) + "-group"
	var refused atomic.Int64
	c.fake.ControlKey(int16(kmsg.OffsetCommit), func(r kmsg.Request) (kmsg.Response, error, bool) {
		req := r.(*kmsg.OffsetCommitRequest)
		if req.Group != group || refused.Load() > 0 {
			c.fake.KeepControl()
			return nil, nil, false
		}
		refused.Add(1)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	if err := tr.Publish(testCtx(t), prepared(t, messages(1, "T", "k")...)); err != nil {
		t.Fatal(err)
	}
	cons := newConsumer(t, c, kafka.ConsumerConfig{Topics: []string{topic}, Group: group}, func(context.Context, *outbox.Message) error { return nil })
	waitFor(t, 15*time.Second, "the commit retried", func() bool { return c.committed(t, group, topic) == 1 })
	if s := cons.Stats(); refused.Load() != 1 || s.Handled != 1 || s.Acked != 1 {
		t.Errorf("stats %+v after %d refused commits, want one refused commit of one handled record", s, refused.Load())
	}
}
