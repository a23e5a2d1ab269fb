package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

// provisionNames returns a stream name and a subject prefix of this test alone, and deletes the
// stream at cleanup.
func provisionNames(t *testing.T, s *server) (stream, prefix string) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	stream, prefix = "PROV_"+suffix, "prov"+suffix
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", stream, err)
		}
	})
	return stream, prefix
}

func TestProvisionPlan(t *testing.T) {
	p, err := outboxnats.ProvisionConfig{
		Transport: outboxnats.Config{Stream: "ORDERS", Routes: map[string]string{"a": "outbox.a", "b": "billing.b"}},
		Durable:   "workers",
	}.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Stream.Subjects, " "); got != "outbox.> billing.b" {
		t.Errorf("subjects %q, want the template's and the route outside it", got)
	}
	if p.Stream.Name != "ORDERS" || p.Stream.Storage != jetstream.FileStorage || p.Stream.Duplicates != outboxnats.DefaultDuplicates {
		t.Errorf("stream %+v", p.Stream)
	}
	if c := p.Consumer; c == nil || c.AckPolicy != jetstream.AckExplicitPolicy || c.MaxDeliver != outboxnats.DefaultMaxDeliver || c.AckWait != outboxnats.DefaultProvisionAckWait {
		t.Errorf("consumer %+v", c)
	}
	for tmpl, want := range map[string]string{"events.{type}.v1": "events.>", "{type}": ">", "fixed.subject": "fixed.subject"} {
		p, err := outboxnats.ProvisionConfig{Stream: "S", Transport: outboxnats.Config{Subject: tmpl}}.Plan()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(p.Stream.Subjects, " "); got != want {
			t.Errorf("template %q: subjects %q, want %q", tmpl, got, want)
		}
	}
	if _, err := (outboxnats.ProvisionConfig{}).Plan(); err == nil || !strings.Contains(err.Error(), "Stream") {
		t.Errorf("no stream name: %v", err)
	}
}

// Provision creates the stream and the durable consumer, finds them the second time, and a relay
// then publishes through the transport to a Consumer of what it made.
func TestProvisionThenRelayAndConsume(t *testing.T) {
	s := needServer(t)
	stream, prefix := provisionNames(t, s)
	tcfg := outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(s.url)}, Subject: prefix + ".{type}", Stream: stream}
	pc := outboxnats.ProvisionConfig{Transport: tcfg, Durable: "workers", AckWait: 10 * time.Second}

	rep, err := outboxnats.Provision(testCtx(t), pc)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got != "created stream,created consumer" {
		t.Fatalf("first run: %s; report %v", got, rep.Objects)
	}
	if line := rep.Objects[0].String(); !strings.HasPrefix(line, "created stream "+stream+" (subjects "+prefix+".>") {
		t.Errorf("line %q", line)
	}
	rep, err = outboxnats.Provision(testCtx(t), pc)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got != "exists stream,exists consumer" {
		t.Fatalf("second run: %s; report %v", got, rep.Objects)
	}
	info, err := s.js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.CachedInfo().Config; c.Storage != jetstream.FileStorage || c.Duplicates != outboxnats.DefaultDuplicates {
		t.Errorf("stream config %+v", c)
	}

	tr := newTransport(t, tcfg)
	if err := tr.CheckStream(testCtx(t), 5*time.Minute+15*time.Second); err != nil {
		t.Fatalf("the provisioned stream fails the relay's start-up check: %v", err)
	}
	store := memstore.New()
	msgs := messages(20, "order.created", "k")
	if err := store.Add(testCtx(t), msgs...); err != nil {
		t.Fatal(err)
	}
	runRelay(t, store, tr, outbox.Config{})

	var mu sync.Mutex
	got := map[string]bool{}
	c, err := outboxnats.NewConsumer(testCtx(t), outboxnats.ConsumerConfig{
		Connection: outboxnats.Connection{URL: outboxnats.URL(s.url)},
		Stream:     stream,
		Durable:    "workers",
		Handler: func(_ context.Context, m *outbox.Message) error {
			mu.Lock()
			got[m.ID] = true
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop consumer: %v", err)
		}
	})
	waitFor(t, 20*time.Second, "the consumer to receive every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(msgs)
	})
	for _, m := range msgs {
		if !got[m.ID] {
			t.Errorf("message %s not received", m.ID)
		}
	}
}

// A stream and a durable consumer that exist with other settings are reported and left as they
// are.
func TestProvisionConflict(t *testing.T) {
	s := needServer(t)
	stream, prefix := provisionNames(t, s)
	if _, err := s.js.CreateStream(testCtx(t), jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".only"}, Storage: jetstream.MemoryStorage, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	pc := outboxnats.ProvisionConfig{Transport: outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(s.url)}, Subject: prefix + ".{type}"}, Stream: stream}
	rep, err := outboxnats.Provision(testCtx(t), pc)
	if !errors.Is(err, outboxnats.ErrConflict) {
		t.Fatalf("err %v, want ErrConflict", err)
	}
	for _, want := range []string{"subjects " + prefix + ".only, want " + prefix + ".>", "memory storage, want file", "duplicates 1m0s, want 10m0s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if got := actions(rep); got != "conflict stream" {
		t.Errorf("report %v", rep.Objects)
	}
	st, err := s.js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.Duplicates != time.Minute || c.Storage != jetstream.MemoryStorage || len(c.Subjects) != 1 {
		t.Errorf("the stream was changed: %+v", c)
	}

	// The stream as asked for, with a durable consumer of other settings.
	pc.Subjects, pc.MemoryStorage, pc.Duplicates = []string{prefix + ".only"}, true, time.Minute
	if _, err := st.CreateConsumer(testCtx(t), jetstream.ConsumerConfig{Durable: "workers", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute, MaxDeliver: 3}); err != nil {
		t.Fatal(err)
	}
	pc.Durable = "workers"
	rep, err = outboxnats.Provision(testCtx(t), pc)
	if !errors.Is(err, outboxnats.ErrConflict) || !strings.Contains(err.Error(), "max deliver 3, want 5") {
		t.Fatalf("err %v, want a conflict on max deliver", err)
	}
	if got := actions(rep); got != "exists stream,conflict consumer" {
		t.Errorf("report %v", rep.Objects)
	}
	cons, err := st.Consumer(testCtx(t), "workers")
	if err != nil {
		t.Fatal(err)
	}
	if c := cons.CachedInfo().Config; c.MaxDeliver != 3 || c.AckWait != time.Minute {
		t.Errorf("the consumer was changed: %+v", c)
	}
}

func actions(rep outboxnats.ProvisionReport) string {
	var s []string
	for _, o := range rep.Objects {
		s = append(s, o.Action+" "+o.Kind)
	}
	return strings.Join(s, ",")
}

// Provision creates the stream a transport publishes into and a durable consumer for a
// Consumer, before either starts: a deployment's set-up step, safe to run at every start.
func ExampleProvision() {
	ctx := context.Background()
	cfg := outboxnats.Config{Connection: outboxnats.Connection{URL: "nats://127.0.0.1:4222"}, Stream: "ORDERS"} // subjects outbox.{type}
	rep, err := outboxnats.Provision(ctx, outboxnats.ProvisionConfig{Transport: cfg, Durable: "billing"})
	if err != nil {
		log.Fatal(err) // errors.Is(err, outboxnats.ErrConflict): the stream exists with other settings
	}
	for _, o := range rep.Objects {
		fmt.Println(o) // created stream ORDERS (subjects outbox.>, file storage, duplicates 10m0s)
	}
}
