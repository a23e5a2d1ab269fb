package outbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// One relay serves the outboxes of two tenants (here in memory; in a service, for instance one
// store/postgres Store per schema) with one transport.
func ExampleNewMultiStore() {
	ctx := context.Background()
	acme, globex := memstore.New(), memstore.New()
	stores, err := outbox.NewMultiStore(map[string]outbox.Store{"acme": acme, "globex": globex})
	if err != nil {
		panic(err)
	}
	broker := memory.New()
	relay, err := outbox.NewRelay(stores, broker, outbox.Config{})
	if err != nil {
		panic(err)
	}
	if err := relay.Start(ctx); err != nil {
		panic(err)
	}

	// Each tenant writes to its own outbox; the key "order-1" is a different key in each.
	for _, st := range []*memstore.Store{acme, globex} {
		m, _ := outbox.NewMessage("ORDER_PLACED", map[string]string{"order": "order-1"})
		m.Key = "order-1"
		if err := st.Add(ctx, m); err != nil {
			panic(err)
		}
	}

	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := broker.WaitFor(waitCtx, 2); err != nil {
		panic(err)
	}
	if err := relay.Stop(ctx); err != nil {
		panic(err)
	}
	fmt.Println("published:", relay.Stats().Published)
	// Output:
	// published: 2
}

// A MultiStore is not an Inspector (a dead letter would not say which outbox it is in): each
// outbox is inspected and repaired through its own store.
func ExampleMultiStore() {
	ctx := context.Background()
	acme := memstore.New()
	stores, err := outbox.NewMultiStore(map[string]outbox.Store{"acme": acme, "globex": memstore.New()})
	if err != nil {
		panic(err)
	}
	m, _ := outbox.NewMessage("ORDER_PLACED", "{}")
	if err := acme.Add(ctx, m); err != nil {
		panic(err)
	}

	st, ok := stores.Outbox("acme")
	fmt.Println(ok)
	if in, ok := st.(outbox.Inspector); ok {
		c, err := in.Counts(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println("acme pending:", c.Pending)
	}
	// Output:
	// true
	// acme pending: 1
}

// Stats reports each outbox's counters, by name: a bounded set of labels for metrics.
func ExampleOutboxStats() {
	ctx := context.Background()
	acme, globex := memstore.New(), memstore.New()
	stores, err := outbox.NewMultiStore(map[string]outbox.Store{"acme": acme, "globex": globex})
	if err != nil {
		panic(err)
	}
	for range 3 {
		m, _ := outbox.NewMessage("ORDER_PLACED", "{}")
		if err := acme.Add(ctx, m); err != nil {
			panic(err)
		}
	}
	m, _ := outbox.NewMessage("ORDER_PLACED", "{}")
	if err := globex.Add(ctx, m); err != nil {
		panic(err)
	}

	broker := memory.New()
	relay, err := outbox.NewRelay(stores, broker, outbox.Config{})
	if err != nil {
		panic(err)
	}
	if err := relay.Start(ctx); err != nil {
		panic(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := broker.WaitFor(waitCtx, 4); err != nil {
		panic(err)
	}
	if err := relay.Stop(ctx); err != nil {
		panic(err)
	}
	for _, s := range stores.Stats() {
		fmt.Printf("%s claimed=%d published=%d failed=%d\n", s.Name, s.Claimed, s.Published, s.Failed)
	}
	// Output:
	// acme claimed=3 published=3 failed=0
	// globex claimed=1 published=1 failed=0
}
