//go:build torture

package torture

import (
	"context"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// killRandomly SIGKILLs a random relay of a random lane n times, at random moments spread over
// about d, restarting each at once.
func killRandomly(t *testing.T, ctx context.Context, lanes []*lane, n int, d time.Duration) {
	gap := d / time.Duration(n)
	for range n {
		if !sleep(ctx, time.Duration(float64(gap)*(0.5+mrand.Float64()))) {
			return
		}
		ln := lanes[mrand.IntN(len(lanes))]
		if err := ln.fleet.kill(mrand.IntN(ln.spec.relays)); err != nil {
			t.Errorf("%s: %v", ln.name, err)
		}
	}
}

// pauseRandomly freezes a random relay of each lane in turn, n times in all, at random moments spread
// over about d, each time for relayPause: longer than its lease, as a stop-the-world pause, a
// VM migration or an overloaded host would, so that other relays take its messages over and it
// wakes up to finish a publish and an ack for messages it no longer holds.
func pauseRandomly(t *testing.T, ctx context.Context, lanes []*lane, n int, d time.Duration) {
	surgers := make([]*writer, len(lanes))
	for i, ln := range lanes {
		surgers[i] = surger(ln)
	}
	gap := d / time.Duration(n)
	for k := range n {
		if !sleep(ctx, time.Duration(float64(gap)*(0.5+mrand.Float64()))) {
			return
		}
		i := k % len(lanes) // every lane gets its pauses
		ln := lanes[i]
		// A surge first, so that the relay most likely holds batches in flight when it freezes.
		if err := surgers[i].commit(ctx, k, burst); err != nil {
			t.Errorf("%s: surge: %v", ln.name, err)
			return
		}
		sleep(ctx, time.Duration(mrand.IntN(40))*time.Millisecond)
		if err := ln.fleet.pause(mrand.IntN(ln.spec.relays), relayPause); err != nil {
			t.Errorf("%s: %v", ln.name, err)
		}
	}
}

// restartPostgres stops the cluster, keeps it down for pgDowntime and starts it again.
func restartPostgres(t *testing.T, cluster []string) {
	t.Logf("stopping PostgreSQL %v for %v", cluster, pgDowntime)
	began := time.Now()
	if err := pgctl(cluster, "stop"); err != nil {
		t.Errorf("%v", err)
		return
	}
	time.Sleep(pgDowntime)
	// Start even if the test is ending: other users of the server need it back.
	for attempt := 1; ; attempt++ {
		err := pgctl(cluster, "start")
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Errorf("%v", err)
			return
		}
		time.Sleep(time.Second)
	}
	t.Logf("PostgreSQL back after %v", time.Since(began).Round(time.Millisecond))
}
