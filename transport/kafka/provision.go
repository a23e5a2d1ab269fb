package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/txoutbox/outbox"
)

// ErrConflict marks a Provision error about a topic that exists with other settings than those
// asked for. Provision leaves such a topic as it is.
var ErrConflict = errors.New("exists with other settings")

// ProvisionConfig says which topics Provision creates: those a Transport of Transport publishes
// to. The zero value of every field but Transport means its documented default.
type ProvisionConfig struct {
	// Transport is the Config of the transport that will publish. Its Connection is how
	// Provision connects; its Topic and the topics of its Routes are created, and its
	// MaxMessageBytes is the smallest max.message.bytes a topic may have.
	Transport Config
	// Topics are more topics to create, such as those a Route func picks (Provision cannot
	// know them). Default none.
	Topics []string
	// Partitions is each topic's partition count. A Key's events stay in order within their
	// partition, so more partitions let more consumers share a topic. Default -1: the
	// brokers' num.partitions.
	Partitions int32
	// ReplicationFactor is each topic's replica count. Default -1: the brokers'
	// default.replication.factor.
	ReplicationFactor int16
}

// ProvisionObject is one topic Provision looked at: kind "topic".
type ProvisionObject = outbox.ProvisionObject

// ProvisionReport lists what Provision created and what it found.
type ProvisionReport struct {
	Objects []ProvisionObject `json:"objects"`
}

// ProvisionPlan is what Provision creates, one entry per topic, in the terms of the Kafka
// CreateTopics request (and of kafka-topics.sh --create).
type ProvisionPlan struct {
	Topics []TopicPlan `json:"topics"`
}

// TopicPlan is one topic to create. -1 means the brokers' default.
type TopicPlan struct {
	Name              string            `json:"name"`
	Partitions        int32             `json:"partitions"`
	ReplicationFactor int16             `json:"replication_factor"`
	Configs           map[string]string `json:"configs"`
}

// Plan validates c and returns what Provision would create, without connecting.
func (c ProvisionConfig) Plan() (ProvisionPlan, error) {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "kafka provision", Field: field, Problem: problem}
	}
	if err := c.Transport.Validate(); err != nil {
		return ProvisionPlan{}, err
	}
	switch {
	case c.Partitions < -1:
		return ProvisionPlan{}, bad("Partitions", "is below -1")
	case c.ReplicationFactor < -1:
		return ProvisionPlan{}, bad("ReplicationFactor", "is below -1")
	}
	for _, name := range c.Topics {
		if err := checkTopic(name); err != nil {
			return ProvisionPlan{}, bad("Topics", err.Error())
		}
	}
	topics := c.topics()
	if len(topics) == 0 {
		return ProvisionPlan{}, bad("Topics", "is empty, and Transport has no Topic or Routes: give the topics its Route picks")
	}
	t := c.Transport.withDefaults()
	var p ProvisionPlan
	for _, name := range topics {
		p.Topics = append(p.Topics, TopicPlan{
			Name: name, Partitions: or(c.Partitions, -1), ReplicationFactor: int16(or(int32(c.ReplicationFactor), -1)),
			// The transport never sends a record larger than MaxMessageBytes in a batch of its
			// own; a topic that takes less would refuse records the transport accepts.
			Configs: map[string]string{"max.message.bytes": strconv.Itoa(t.MaxMessageBytes)},
		})
	}
	return p, nil
}

// or is v, or def when v is zero.
func or(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

// topics are the Transport's Topic, then its Routes' topics and Topics, sorted, each once.
func (c ProvisionConfig) topics() []string {
	var rest []string
	for _, name := range c.Transport.Routes {
		rest = append(rest, name)
	}
	rest = append(rest, c.Topics...)
	slices.Sort(rest)
	rest = slices.Compact(rest)
	if c.Transport.Topic == "" {
		return rest
	}
	return append([]string{c.Transport.Topic}, slices.DeleteFunc(rest, func(s string) bool { return s == c.Transport.Topic })...)
}

// Provision creates the topics of c that do not exist. It is idempotent: a topic that exists
// with the settings asked for is reported as found. One that exists with other settings (a
// partition count or replication factor that was asked for and differs, or a max.message.bytes
// below the transport's MaxMessageBytes) is left as it is, reported as a conflict, and the
// error, which wraps ErrConflict, says what differs. Brokers that cannot be reached are an
// error marked outbox.Unavailable.
func Provision(ctx context.Context, c ProvisionConfig) (ProvisionReport, error) {
	var rep ProvisionReport
	p, err := c.Plan()
	if err != nil {
		return rep, err
	}
	cl, err := kgo.NewClient(clientOptions(c.Transport.withDefaults())...)
	if err != nil {
		return rep, fmt.Errorf("kafka: provision: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	names := make([]string, len(p.Topics))
	for i, tp := range p.Topics {
		names[i] = tp.Name
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return rep, provisionError("list topics", err)
	}
	var conflicts []string
	for _, tp := range p.Topics {
		o := ProvisionObject{Kind: "topic", Name: tp.Name}
		if d, ok := existing[tp.Name]; ok && d.Err == nil {
			diff, err := topicDiff(ctx, adm, d, tp)
			if err != nil {
				return rep, provisionError("topic "+tp.Name, err)
			}
			o.Action, o.Detail = "exists", fmt.Sprintf("%d partitions, replication factor %d", len(d.Partitions), d.Partitions.NumReplicas())
			if diff != "" {
				o.Action, o.Detail = "conflict", diff
				conflicts = append(conflicts, "topic "+tp.Name+": "+diff)
			}
			rep.Objects = append(rep.Objects, o)
			continue
		}
		configs := map[string]*string{}
		for k, v := range tp.Configs {
			configs[k] = &v
		}
		res, err := adm.CreateTopic(ctx, tp.Partitions, tp.ReplicationFactor, configs, tp.Name)
		if err == nil {
			err = res.Err
		}
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Created by someone else since the listing: what it is is theirs to say.
			o.Action, o.Detail = "exists", "created meanwhile by another client"
		case err != nil:
			return rep, provisionError("topic "+tp.Name, err)
		default:
			o.Action, o.Detail = "created", fmt.Sprintf("%d partitions, replication factor %d, max.message.bytes %s", res.NumPartitions, res.ReplicationFactor, tp.Configs["max.message.bytes"])
		}
		rep.Objects = append(rep.Objects, o)
	}
	if len(conflicts) > 0 {
		return rep, fmt.Errorf("kafka: provision: %s: %w (left as it is)", strings.Join(conflicts, "; "), ErrConflict)
	}
	return rep, nil
}

// topicDiff says how an existing topic differs from the plan: only what the plan asks for
// explicitly, and a max.message.bytes too small for the transport's records.
func topicDiff(ctx context.Context, adm *kadm.Client, have kadm.TopicDetail, want TopicPlan) (string, error) {
	var d []string
	if n := int32(len(have.Partitions)); want.Partitions > 0 && n != want.Partitions {
		d = append(d, fmt.Sprintf("%d partitions, want %d", n, want.Partitions))
	}
	if n := int16(have.Partitions.NumReplicas()); want.ReplicationFactor > 0 && n != want.ReplicationFactor {
		d = append(d, fmt.Sprintf("replication factor %d, want %d", n, want.ReplicationFactor))
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, have.Topic)
	if err != nil {
		return "", err
	}
	rc, err := cfgs.On(have.Topic, nil)
	if err != nil {
		return "", err
	}
	if rc.Err != nil {
		return "", rc.Err
	}
	wantMax, _ := strconv.Atoi(want.Configs["max.message.bytes"])
	for _, cfg := range rc.Configs {
		if cfg.Key != "max.message.bytes" || cfg.Value == nil {
			continue
		}
		if have, err := strconv.Atoi(*cfg.Value); err == nil && have < wantMax {
			d = append(d, fmt.Sprintf("max.message.bytes %d, below the transport's MaxMessageBytes %d", have, wantMax))
		}
	}
	return strings.Join(d, ", "), nil
}

// provisionError says what failed; brokers that cannot be reached or refuse who the client is
// are an outage, as they are for Publish.
func provisionError(what string, err error) error {
	err = fmt.Errorf("kafka: provision: %s: %w", what, err)
	refused := slices.ContainsFunc(authErrors, func(e error) bool { return errors.Is(err, e) })
	if refused || errors.Is(err, context.DeadlineExceeded) || kerr.IsRetriable(err) || isNetworkError(err) {
		return outbox.Unavailable(err)
	}
	return err
}
