package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
)

// Provisioning defaults, exported so that docs and the CLI cannot drift from them.
const (
	// DefaultDuplicates is the duplicate window Provision gives a stream: above the relay's
	// retry horizon with its defaults (5m15s), so a republish after a lost PubAck is dropped.
	DefaultDuplicates = 10 * time.Minute
	// DefaultProvisionAckWait is the AckWait of a durable consumer Provision creates.
	DefaultProvisionAckWait = 30 * time.Second
	// DefaultMaxDeliver is how often a durable consumer Provision creates delivers a message
	// before giving up on it.
	DefaultMaxDeliver = 5
)

// ErrConflict marks a Provision error about an object that exists with other settings than
// those asked for. Provision leaves such an object as it is.
var ErrConflict = errors.New("exists with other settings")

// ProvisionConfig says what Provision creates: a JetStream stream capturing what a Transport of
// Transport publishes, and optionally a durable pull consumer of it for a Consumer. The zero
// value of every field but Stream means its documented default.
type ProvisionConfig struct {
	// Transport is the Config of the transport that will publish into the stream. Its connection
	// fields are how Provision connects; its Subject and Routes say which subjects the stream
	// captures, and its Stream names the stream when Stream is empty.
	Transport Config
	// Stream is the stream's name. Default Transport.Stream; one of them is required.
	Stream string
	// Subjects are the subjects the stream captures. Default: what Transport publishes to, the
	// Subject template with its {type} token and all after it as ">" ("outbox.{type}" gives
	// "outbox.>"), plus each Routes subject that does not match it.
	Subjects []string
	// MemoryStorage keeps the stream in memory rather than in files. Default false: file
	// storage, which survives a server restart.
	MemoryStorage bool
	// Replicas is the stream's replica count. Default 1.
	Replicas int
	// Duplicates is the stream's duplicate window. Keep it above the relay's retry horizon
	// (its Lease, or PublishTimeout plus Backoff.Max, whichever is longer). Default 10m
	// (DefaultDuplicates).
	Duplicates time.Duration

	// Durable, when set, is the name of a durable pull consumer with explicit acks to create
	// on the stream, as a Consumer reads. Default none.
	Durable string
	// AckWait is the durable consumer's AckWait. Default 30s (DefaultProvisionAckWait).
	AckWait time.Duration
	// MaxDeliver is how often the durable consumer delivers a message. Default 5
	// (DefaultMaxDeliver); -1: without limit.
	MaxDeliver int
	// MaxAckPending is the durable consumer's MaxAckPending: 1 for a Consumer with KeepKeyOrder.
	// Default the server's (1000).
	MaxAckPending int
}

// ProvisionObject is one object Provision looked at: kinds "stream" and "consumer" (a consumer's Name is STREAM/DURABLE).
type ProvisionObject = outbox.ProvisionObject

// ProvisionReport lists what Provision created and what it found.
type ProvisionReport struct {
	Objects []ProvisionObject `json:"objects"`
}

// ProvisionPlan is what Provision creates, in the JetStream API's own JSON (what
// `nats stream add --config` and `nats consumer add --config` read).
type ProvisionPlan struct {
	Stream   jetstream.StreamConfig    `json:"stream"`
	Consumer *jetstream.ConsumerConfig `json:"consumer,omitempty"`
}

// Plan validates c and returns what Provision would create, without connecting.
func (c ProvisionConfig) Plan() (ProvisionPlan, error) {
	bad := func(field, problem string) error {
		return &outbox.ConfigError{Component: "nats provision", Field: field, Problem: problem}
	}
	if err := c.Transport.Validate(); err != nil {
		return ProvisionPlan{}, err
	}
	t := c.Transport.withDefaults()
	name := c.Stream
	if name == "" {
		name = t.Stream
	}
	switch {
	case name == "":
		return ProvisionPlan{}, bad("Stream", "is empty (and so is Transport.Stream)")
	case !validStreamName(name):
		return ProvisionPlan{}, bad("Stream", fmt.Sprintf("%q is not a stream name (no spaces, dots, *, >, / or \\)", name))
	case t.Stream != "" && t.Stream != name:
		return ProvisionPlan{}, bad("Stream", fmt.Sprintf("%q is not Transport.Stream %q, the stream the transport expects", name, t.Stream))
	case c.Replicas < 0:
		return ProvisionPlan{}, bad("Replicas", "is negative")
	case c.Duplicates < 0:
		return ProvisionPlan{}, bad("Duplicates", "is negative")
	case c.Durable != "" && !validStreamName(c.Durable):
		return ProvisionPlan{}, bad("Durable", fmt.Sprintf("%q is not a consumer name (no spaces, dots, *, >, / or \\)", c.Durable))
	case c.AckWait < 0:
		return ProvisionPlan{}, bad("AckWait", "is negative")
	case c.MaxDeliver < -1:
		return ProvisionPlan{}, bad("MaxDeliver", "is below -1")
	case c.MaxAckPending < 0:
		return ProvisionPlan{}, bad("MaxAckPending", "is negative")
	}
	subjects := c.Subjects
	if len(subjects) == 0 {
		subjects = captured(t)
	}
	for _, s := range subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return ProvisionPlan{}, bad("Subjects", fmt.Sprintf("%q is not a subject", s))
		}
	}
	p := ProvisionPlan{Stream: jetstream.StreamConfig{
		Name: name, Subjects: subjects, Storage: jetstream.FileStorage,
		Replicas: max(c.Replicas, 1), Duplicates: c.Duplicates,
	}}
	if c.MemoryStorage {
		p.Stream.Storage = jetstream.MemoryStorage
	}
	if p.Stream.Duplicates == 0 {
		p.Stream.Duplicates = DefaultDuplicates
	}
	if c.Durable != "" {
		cc := jetstream.ConsumerConfig{
			Durable: c.Durable, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: c.AckWait, MaxDeliver: c.MaxDeliver, MaxAckPending: c.MaxAckPending,
		}
		if cc.AckWait == 0 {
			cc.AckWait = DefaultProvisionAckWait
		}
		if cc.MaxDeliver == 0 {
			cc.MaxDeliver = DefaultMaxDeliver
		}
		p.Consumer = &cc
	}
	return p, nil
}

// captured is what a transport of t publishes to, as stream subjects.
func captured(t Config) []string {
	var subs []string
	tmpl := t.Subject
	if i := strings.Index(tmpl, TypePlaceholder); i >= 0 {
		start := strings.LastIndex(tmpl[:i], ".") + 1
		tmpl = tmpl[:start] + ">"
	}
	subs = append(subs, tmpl)
	var routed []string
	for _, s := range t.Routes {
		if !subjectMatches(tmpl, s) && !slices.Contains(routed, s) {
			routed = append(routed, s)
		}
	}
	slices.Sort(routed)
	return append(subs, routed...)
}

// subjectMatches reports whether subject s is captured by filter f (with * and > wildcards).
func subjectMatches(f, s string) bool {
	ft, st := strings.Split(f, "."), strings.Split(s, ".")
	for i, tok := range ft {
		if tok == ">" {
			return len(st) > i
		}
		if i >= len(st) || tok != "*" && tok != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

// Provision creates the stream of c, and its durable consumer when c names one, unless they
// exist. It is idempotent: an object that exists with the settings asked for is reported as
// found. One that exists with other settings is left as it is, reported as a conflict, and the
// error, which wraps ErrConflict, says what differs. A server that cannot be reached is an
// error marked outbox.Unavailable.
func Provision(ctx context.Context, c ProvisionConfig) (ProvisionReport, error) {
	var rep ProvisionReport
	p, err := c.Plan()
	if err != nil {
		return rep, err
	}
	t := c.Transport.withDefaults()
	nc := t.Conn
	if nc == nil {
		if nc, err = connect(ctx, t.Connection, t.Logger); err != nil {
			return rep, err
		}
		defer nc.Close()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return rep, fmt.Errorf("nats: provision: %w", err)
	}
	var conflicts []string
	note := func(o ProvisionObject) {
		rep.Objects = append(rep.Objects, o)
		if o.Action == "conflict" {
			conflicts = append(conflicts, o.Kind+" "+o.Name+": "+o.Detail)
		}
	}

	sc := p.Stream
	o := ProvisionObject{Kind: "stream", Name: sc.Name}
	// CreateStream of an existing stream with the same config succeeds: look first, so that
	// "created" means created.
	s, err := js.Stream(ctx, sc.Name)
	switch {
	case err == nil:
		if diff := streamDiff(s.CachedInfo().Config, sc); diff != "" {
			o.Action, o.Detail = "conflict", diff
		} else {
			o.Action, o.Detail = "exists", streamDetail(sc)
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if s, err = js.CreateStream(ctx, sc); err != nil {
			return rep, provisionError("stream "+sc.Name, err)
		}
		o.Action, o.Detail = "created", streamDetail(sc)
	default:
		return rep, provisionError("stream "+sc.Name, err)
	}
	note(o)

	if cc := p.Consumer; cc != nil && o.Action != "conflict" {
		o := ProvisionObject{Kind: "consumer", Name: sc.Name + "/" + cc.Durable}
		existing, err := s.Consumer(ctx, cc.Durable)
		switch {
		case err == nil:
			if diff := consumerDiff(existing.CachedInfo().Config, *cc); diff != "" {
				o.Action, o.Detail = "conflict", diff
			} else {
				o.Action, o.Detail = "exists", consumerDetail(*cc)
			}
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			if _, err := s.CreateConsumer(ctx, *cc); err != nil {
				return rep, provisionError("consumer "+o.Name, err)
			}
			o.Action, o.Detail = "created", consumerDetail(*cc)
		default:
			return rep, provisionError("consumer "+o.Name, err)
		}
		note(o)
	}
	if len(conflicts) > 0 {
		return rep, fmt.Errorf("nats: provision: %s: %w (left as it is)", strings.Join(conflicts, "; "), ErrConflict)
	}
	return rep, nil
}

func provisionError(what string, err error) error {
	err = fmt.Errorf("nats: provision: %s: %w", what, err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return outbox.Unavailable(err)
	}
	return err
}

func streamDetail(c jetstream.StreamConfig) string {
	return fmt.Sprintf("subjects %s, %s storage, duplicates %v", strings.Join(c.Subjects, " "), storage(c.Storage), c.Duplicates)
}

func consumerDetail(c jetstream.ConsumerConfig) string {
	return fmt.Sprintf("pull, ack explicit, ack wait %v, max deliver %d", c.AckWait, c.MaxDeliver)
}

// streamDiff says how the existing stream's config differs from the one asked for.
func streamDiff(have, want jetstream.StreamConfig) string {
	var d []string
	if !slices.Equal(sorted(have.Subjects), sorted(want.Subjects)) {
		d = append(d, fmt.Sprintf("subjects %s, want %s", strings.Join(have.Subjects, " "), strings.Join(want.Subjects, " ")))
	}
	if have.Storage != want.Storage {
		d = append(d, fmt.Sprintf("%s storage, want %s", storage(have.Storage), storage(want.Storage)))
	}
	if have.Duplicates != want.Duplicates {
		d = append(d, fmt.Sprintf("duplicates %v, want %v", have.Duplicates, want.Duplicates))
	}
	if have.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas %d, want %d", have.Replicas, want.Replicas))
	}
	return strings.Join(d, ", ")
}

func consumerDiff(have, want jetstream.ConsumerConfig) string {
	var d []string
	if have.DeliverSubject != "" {
		d = append(d, "a push consumer, want pull")
	}
	if have.AckPolicy != want.AckPolicy {
		d = append(d, fmt.Sprintf("ack %s, want %s", have.AckPolicy, want.AckPolicy))
	}
	if have.AckWait != want.AckWait {
		d = append(d, fmt.Sprintf("ack wait %v, want %v", have.AckWait, want.AckWait))
	}
	if have.MaxDeliver != want.MaxDeliver {
		d = append(d, fmt.Sprintf("max deliver %d, want %d", have.MaxDeliver, want.MaxDeliver))
	}
	if want.MaxAckPending != 0 && have.MaxAckPending != want.MaxAckPending {
		d = append(d, fmt.Sprintf("max ack pending %d, want %d", have.MaxAckPending, want.MaxAckPending))
	}
	return strings.Join(d, ", ")
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func storage(s jetstream.StorageType) string { return strings.ToLower(s.String()) }
