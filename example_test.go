package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// A message is made from any value that encodes as JSON; JSON text is taken as it is. The store
// assigns ID and CreatedAt when it writes the message.
func ExampleNewMessage() {
	type userCreated struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	m, err := outbox.NewMessage("USER_CREATED", userCreated{ID: "u-1", Name: "Ada"})
	if err != nil {
		panic(err)
	}
	m.Key = "u-1" // the user's events are published in order
	fmt.Println(m.Type, string(m.Payload), m.ID == "")

	_, err = outbox.NewMessage("USER_CREATED", `{"id":`) // text that is not JSON
	fmt.Println(err, errors.Is(err, outbox.ErrInvalidMessage))
	// Output:
	// USER_CREATED {"id":"u-1","name":"Ada"} true
	// invalid message: payload not valid JSON true
}

// A relay moves committed messages from a store to a transport. Here both are in process
// (store/memory and transport/memory); a service uses, say, store/postgres and transport/sqs
// the same way.
func ExampleNewRelay() {
	ctx := context.Background()
	store := memstore.New()
	broker := memory.New()

	relay, err := outbox.NewRelay(store, broker, outbox.Config{})
	if err != nil {
		panic(err)
	}
	if err := relay.Start(ctx); err != nil {
		panic(err)
	}

	// The business change and its event commit together, or neither does.
	tx := store.Begin()
	m, _ := outbox.NewMessage("ORDER_PLACED", map[string]string{"order": "o-1"})
	if err := tx.Add(ctx, m); err != nil {
		panic(err)
	}
	failed := store.Begin() // a business change that fails: its event is never published
	other, _ := outbox.NewMessage("ORDER_PLACED", map[string]string{"order": "o-2"})
	if err := failed.Add(ctx, other); err != nil {
		panic(err)
	}
	failed.Rollback()
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := broker.WaitFor(waitCtx, 1); err != nil {
		panic(err)
	}
	if err := relay.Stop(ctx); err != nil { // acknowledges what is in flight
		panic(err)
	}
	for _, got := range broker.Received() {
		fmt.Println(got.Type, string(got.Payload))
	}
	fmt.Println("published:", relay.Stats().Published)
	// Output:
	// ORDER_PLACED {"order":"o-1"}
	// published: 1
}

// Chain builds the publish path the relay runs (Config.Middleware): the first middleware is the
// outermost, so it sees the batch first and the transport's result last.
func ExampleChain() {
	trace := func(name string) outbox.Middleware {
		return func(next outbox.Handler) outbox.Handler {
			return func(ctx context.Context, msgs []*outbox.Message) error {
				fmt.Println(name, "before")
				err := next(ctx, msgs)
				fmt.Println(name, "after:", err)
				return err
			}
		}
	}
	publish := func(ctx context.Context, msgs []*outbox.Message) error {
		fmt.Println("publish", len(msgs))
		return nil
	}
	h := outbox.Chain(publish, trace("outer"), trace("inner"))

	m, _ := outbox.NewMessage("PING", "{}")
	_ = h(context.Background(), []*outbox.Message{m})
	// Output:
	// outer before
	// inner before
	// publish 1
	// inner after: <nil>
	// outer after: <nil>
}

// A middleware is a function from the next Handler to a new one. This one stamps a header on
// every message before it is published; middleware must hand the batch on in order.
func ExampleMiddleware() {
	stamp := func(service string) outbox.Middleware {
		return func(next outbox.Handler) outbox.Handler {
			return func(ctx context.Context, msgs []*outbox.Message) error {
				for _, m := range msgs {
					if m.Headers == nil {
						m.Headers = map[string]string{}
					}
					m.Headers["source"] = service
				}
				return next(ctx, msgs)
			}
		}
	}
	broker := memory.New()
	h := outbox.Chain(broker.Publish, stamp("billing"))

	m, _ := outbox.NewMessage("INVOICE_SENT", `{"invoice":"i-7"}`)
	if err := h(context.Background(), []*outbox.Message{m}); err != nil {
		panic(err)
	}
	fmt.Println(broker.Received()[0].Headers["source"])
	// Output:
	// billing
}

// A transport marks with Permanent what no retry can fix, and reports a partial failure with a
// *BatchError. The relay dead-letters a permanent failure at once, acknowledges the messages
// that went out, and retries the others with backoff.
func ExamplePermanent() {
	const limit = 64
	publish := outbox.TransportFunc(func(ctx context.Context, msgs []*outbox.Message) error {
		failed := outbox.NewBatchError()
		for _, m := range msgs {
			if len(m.Payload) > limit {
				failed.Add(m.ID, outbox.Permanent(fmt.Errorf("broker: %d bytes exceed %d", len(m.Payload), limit)))
			}
		}
		return failed.ErrOrNil()
	})

	small, _ := outbox.NewMessage("NOTE", `"hi"`)
	small.ID = "0190c6a0-0000-7000-8000-000000000001"
	big, _ := outbox.NewMessage("NOTE", `"`+strings.Repeat("x", 100)+`"`)
	big.ID = "0190c6a0-0000-7000-8000-000000000002"

	err := publish.Publish(context.Background(), []*outbox.Message{small, big})
	var be *outbox.BatchError
	if errors.As(err, &be) {
		for id, cause := range be.Failed {
			fmt.Println(id, cause, outbox.IsPermanent(cause))
		}
	}
	fmt.Println("whole batch permanent:", outbox.IsPermanent(err))
	fmt.Println(outbox.IsPermanent(errors.New("connection reset")), outbox.Permanent(nil) == nil)
	// Output:
	// 0190c6a0-0000-7000-8000-000000000002 broker: 102 bytes exceed 64 true
	// whole batch permanent: true
	// false true
}

// Unavailable marks an outage of the broker itself. The relay then charges no attempt, releases
// the batch and probes the transport until it publishes again (Stats.TransportDownSince).
func ExampleUnavailable() {
	err := outbox.Unavailable(errors.New("sqs: send: connection refused"))
	fmt.Println(err, outbox.IsUnavailable(err), outbox.IsPermanent(err))
	// Permanent wins: a message the broker refuses stays refused when the broker is back.
	fmt.Println(outbox.IsUnavailable(outbox.Permanent(err)))
	// Output:
	// sqs: send: connection refused true false
	// false
}

// A config field of type Secret never shows its value: not under any fmt verb, not in JSON, not
// in an error that formats the config. The driver gets it with Reveal.
func ExampleSecret() {
	type brokerConfig struct {
		URL      string
		Password outbox.Secret
	}
	cfg := brokerConfig{URL: "amqp://app@mq:5672/", Password: outbox.Secret("s3cr3t")}

	fmt.Printf("%v\n%+v\n%#v\n", cfg, cfg, cfg)
	b, _ := json.Marshal(cfg)
	fmt.Println(string(b))
	fmt.Println(cfg.Password.Reveal())
	// Output:
	// {amqp://app@mq:5672/ xxxxx}
	// {URL:amqp://app@mq:5672/ Password:xxxxx}
	// outbox_test.brokerConfig{URL:"amqp://app@mq:5672/", Password:"xxxxx"}
	// {"URL":"amqp://app@mq:5672/","Password":"xxxxx"}
	// s3cr3t
}
