package main

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/server"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
)

// startup is what /healthz and /metrics see of a relay daemon that is still connecting: the
// server starts before the transport and the store are open, and reads them once they are.
type startup struct {
	phase   atomic.Pointer[string] // what the daemon waits for; "" once the relay runs
	running atomic.Bool
	store   atomic.Pointer[openedStore]
	relay   atomic.Pointer[outbox.Relay]
	reg     *prometheus.Registry
}

func (s *startup) set(phase string) { s.phase.Store(&phase) }

// errNotOpen is the store's ping before it is open.
var errNotOpen = errors.New("store not open yet")

// serverConfig reads the store and the relay through s, so the server can start first.
func (s *startup) serverConfig(target storeurl.Target, rawURL string) server.Config {
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sc := server.Config{
		Running: s.running.Load,
		Starting: func() string {
			if p := s.phase.Load(); p != nil && !s.running.Load() {
				return *p
			}
			return ""
		},
		Ping: func(ctx context.Context) error {
			if o := s.store.Load(); o != nil {
				return o.ping(ctx)
			}
			return errNotOpen
		},
		Stats: func() outbox.Stats {
			if r := s.relay.Load(); r != nil {
				return r.Stats()
			}
			return outbox.Stats{}
		},
		Registry: s.reg,
	}
	if target.Postgres.WAL != nil {
		scrub := func(text string) string { return scrubURLs(text, rawURL, replicationURL(target)) }
		sc.Slot = func(ctx context.Context) (server.SlotHealth, error) {
			o := s.store.Load()
			if o == nil {
				return server.SlotHealth{}, errNotOpen
			}
			return slotHealth(o.wal, scrub)(ctx)
		}
		s.reg.MustRegister(server.NewSlotCollector(sc.Slot, 5*time.Second))
	}
	return sc
}

// opened hands the open store and the built relay to the server, and registers their metrics.
func (s *startup) opened(o *openedStore, r *outbox.Relay, publishDuration prometheus.Collector) {
	s.store.Store(o)
	s.relay.Store(r)
	if s.reg != nil {
		s.reg.MustRegister(server.NewRelayCollector(r.Stats), publishDuration, server.NewStoreCollector(o, 5*time.Second))
	}
}
