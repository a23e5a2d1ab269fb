// Package server serves the relay daemon's /healthz and Prometheus /metrics endpoints.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/txoutbox/outbox"
)

// Config says what the endpoints report. Every field but Stats and CheckTimeout is required.
type Config struct {
	// Running reports whether the relay runs: /healthz fails while it starts and once it stops.
	Running func() bool
	// Starting, when set, says what a relay that does not run yet waits for ("connecting to the
	// transport (nats)"), for /healthz to show; "" when there is nothing to say.
	Starting func() string
	// Ping checks that the store answers; /healthz calls it with a timeout of CheckTimeout.
	Ping func(ctx context.Context) error
	// Stats returns the relay's counters (outbox.Relay.Stats): /healthz fails while they say the
	// transport is unavailable. Default: the transport is not checked.
	Stats func() outbox.Stats
	// Registry holds the collectors /metrics exposes.
	Registry *prometheus.Registry
	// Slot reports on the replication slot of a PostgreSQL store in WAL mode: /healthz fails
	// while its Problem is set or it cannot be read. Default: no slot (every other store).
	Slot func(ctx context.Context) (SlotHealth, error)
	// CheckTimeout bounds one /healthz store check. Default 2s.
	CheckTimeout time.Duration
}

// SlotHealth is the replication slot as /healthz and /metrics show it (WAL mode only).
type SlotHealth struct {
	Name string `json:"name"`
	// Exists is false when the slot is missing; Active when some connection reads it.
	Exists bool `json:"exists"`
	Active bool `json:"active"`
	// Holding: this relay reads the slot. False on a standby, which waits to take it over.
	Holding bool `json:"holding"`
	// WALStatus is the server's wal_status of the slot: reserved, extended, unreserved or lost.
	WALStatus string `json:"wal_status,omitempty"`
	// LagBytes is the WAL written since the slot's confirmed position; RetainedBytes the WAL
	// the server keeps for it.
	LagBytes      int64 `json:"lag_bytes"`
	RetainedBytes int64 `json:"retained_bytes"`
	// LagSeconds is the age of the oldest transaction this relay streamed and has not confirmed.
	LagSeconds float64 `json:"lag_seconds"`
	// Buffered counts the messages this relay streamed and has not settled.
	Buffered int `json:"buffered"`
	// Alarm is the store's alarm: lag past the threshold, WAL lost, or no slot.
	Alarm bool `json:"alarm"`
	// Problem says why the slot makes the relay unhealthy; empty when it does not.
	Problem string `json:"problem,omitempty"`
}

// Server is the HTTP server of the daemon's endpoints.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
	once sync.Once
}

// Start listens on addr (host:port; port 0 picks a free one) and serves in a goroutine until
// Shutdown.
func Start(addr string, cfg Config) (*Server, error) {
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", health(cfg))
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops accepting requests, waits for those in flight within ctx and returns once the
// serving goroutine has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() {
		err = s.srv.Shutdown(ctx)
		if serveErr := <-s.done; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
	})
	return err
}

// Health is what /healthz reports, as JSON when the request accepts application/json (outbox
// status --relay reads it so) and as one line of text otherwise.
type Health struct {
	// OK is true when the relay runs, its transport is available, the store answers and, in WAL
	// mode, the replication slot has no problem (a healthy standby is OK).
	OK bool `json:"ok"`
	// Running is false while the relay starts and once it stops.
	Running bool `json:"running"`
	// Starting says what a relay that does not run yet is doing: connecting to the transport,
	// to the store, stopping.
	Starting string `json:"starting,omitempty"`
	// StoreOK is true when the store answered the ping in time; it is checked only while the
	// relay runs.
	StoreOK bool `json:"store_ok"`
	// TransportDownSince is when the transport became unavailable; null while it is available.
	TransportDownSince *time.Time `json:"transport_down_since"`
	// TransportError is the error that paused the relay, while the transport is unavailable.
	TransportError string `json:"transport_error,omitempty"`
	// Slot is the replication slot of a WAL-mode store, read while the relay runs; absent for
	// every other store.
	Slot *SlotHealth `json:"slot,omitempty"`
}

// Text is the one line /healthz answers in text: "ok", or why the relay is unhealthy.
func (h Health) Text(now time.Time) string {
	if h.OK {
		return "ok"
	}
	var why []string
	if !h.Running {
		if h.Starting != "" {
			why = append(why, "relay not running: "+h.Starting)
		} else {
			why = append(why, "relay not running")
		}
	}
	if h.TransportDownSince != nil {
		why = append(why, fmt.Sprintf("transport unavailable since %s (%s ago): %s",
			h.TransportDownSince.UTC().Format(time.RFC3339), now.Sub(*h.TransportDownSince).Round(time.Second), oneLine(h.TransportError)))
	}
	if h.Running && !h.StoreOK {
		why = append(why, "store not answering")
	}
	if h.Slot != nil && h.Slot.Problem != "" {
		why = append(why, oneLine(h.Slot.Problem))
	}
	return strings.Join(why, "; ")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// health answers 200 "ok" while the relay runs, its transport is available and the store
// answers, and 503 with the reasons otherwise. A relay that lost its database for good is
// restarted by an orchestrator watching it; one whose broker is down says since when and why,
// and resumes by itself once the broker is back (nothing it holds is lost or charged meanwhile).
func health(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := Health{Running: cfg.Running()}
		if !h.Running && cfg.Starting != nil {
			h.Starting = cfg.Starting()
		}
		if h.Running {
			ctx, cancel := context.WithTimeout(r.Context(), cfg.CheckTimeout)
			// The driver's error is not shown: it may name hosts and users.
			h.StoreOK = cfg.Ping(ctx) == nil
			if cfg.Slot != nil {
				slot, err := cfg.Slot(ctx)
				if err != nil {
					slot.Problem = "replication slot unreadable (the store does not answer)"
				}
				h.Slot = &slot
			}
			cancel()
		}
		if cfg.Stats != nil {
			if s := cfg.Stats(); !s.TransportDownSince.IsZero() {
				since := s.TransportDownSince
				h.TransportDownSince, h.TransportError = &since, s.TransportError
			}
		}
		h.OK = h.Running && h.StoreOK && h.TransportDownSince == nil && (h.Slot == nil || h.Slot.Problem == "")
		code := http.StatusOK
		if !h.OK {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(h)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(h.Text(time.Now()) + "\n"))
	})
}
