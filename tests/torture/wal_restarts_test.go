//go:build torture

package torture

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// cleanStopTimeout bounds a relay's clean stop: its in-flight batches published and
// acknowledged, its settled position confirmed and what it had not settled written to the table.
const cleanStopTimeout = 20 * time.Second

// appNameFlags returns the flags that give the connections of slot i's relay an
// application_name of their own, by which holderSlot tells the holder.
func appNameFlags(pgURL string, relays int) (func(i int) []string, error) {
	urls := make([]string, relays)
	for i := range urls {
		var err error
		if urls[i], err = withAppName(pgURL, relayAppName(i)); err != nil {
			return nil, err
		}
	}
	return func(i int) []string { return []string{"-postgres-url", urls[i]} }, nil
}

// stopCleanly stops a relay of every lane with SIGTERM n times, at random moments spread over
// about d, and restarts it once it has exited: in a WAL lane the relay holding the slot two
// times in three (when one holds it), a random one otherwise. A surge comes first, so that a
// stopping holder most likely has batches in flight and streamed messages it has not handed
// out, part of one transaction among them: what its clean stop must confirm, or write to the
// table.
func stopCleanly(t *testing.T, ctx context.Context, lanes []*lane, n int, d time.Duration) {
	gap := d / time.Duration(n) * 2 / 3 // a stop, its surge and the restart take about a second more
	var wg sync.WaitGroup
	for _, ln := range lanes {
		surge := surger(ln)
		wg.Go(func() {
			for k := range n {
				if !sleep(ctx, time.Duration(float64(gap)*(0.5+rand.Float64()))) {
					return
				}
				if err := surge.commit(ctx, k, burst); err != nil {
					t.Errorf("%s: surge: %v", ln.name, err)
					return
				}
				sleep(ctx, time.Duration(rand.IntN(40))*time.Millisecond)
				i, holder := rand.IntN(ln.spec.relays), -1
				if ln.spec.wal {
					holder, _ = ln.holderSlot(ctx) // -1 when nobody holds it, or on an error
					if holder >= 0 && rand.IntN(3) < 2 {
						i = holder
					}
				}
				if i == holder {
					ln.mu.Lock()
					ln.holderStops++
					ln.mu.Unlock()
				}
				if err := ln.fleet.restartCleanly(i, cleanStopTimeout); err != nil {
					t.Errorf("%s: %v", ln.name, err)
				}
			}
		})
	}
	wg.Wait()
}
