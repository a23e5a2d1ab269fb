package outboxtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/txoutbox/outbox/core"
	"github.com/txoutbox/outbox/transport/memory"
)

// testRelay runs the real relay over the store: every message is published once, and in
// ordered mode each key's messages arrive in write order.
func (s *storeSuite) testRelay(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("Ordered=%v", ordered), func(t *testing.T) {
			h := s.newStore(t)
			var written []*core.Message
			for k := range 10 {
				written = append(written, mustAdd(t, h, NewMessages(30, "T", fmt.Sprint("key-", k%5))...)...)
			}
			tr := memory.New()
			relay, err := core.NewRelay(h.Store, tr, core.Config{
				BatchSize: 25, Concurrency: 3, PollInterval: 20 * time.Millisecond, Lease: 10 * time.Second, Ordered: ordered,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			if err := relay.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitErr := tr.WaitFor(ctx, len(written))
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := relay.Stop(stopCtx); err != nil {
				t.Fatalf("stop: %v", err)
			}
			if waitErr != nil {
				t.Fatalf("published %d of %d: %v", tr.Len(), len(written), waitErr)
			}
			CheckDelivery(t, written, tr.Received(), DeliveryCheck{Ordered: ordered})
			if got := mustClaim(t, h.Store, core.ClaimRequest{Owner: owner("after")}); len(got) != 0 {
				t.Fatalf("%d messages still claimable after the relay published everything", len(got))
			}
		})
	}
}
