// Package server serves the relay daemon's /healthz and Prometheus /metrics endpoints.
package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config says what the endpoints report. Every field is required.
type Config struct {
	// Running reports whether the relay runs: /healthz fails while it starts and once it stops.
	Running func() bool
	// Ping checks that the store answers; /healthz calls it with a timeout of CheckTimeout.
	Ping func(ctx context.Context) error
	// Registry holds the collectors /metrics exposes.
	Registry *prometheus.Registry
	// CheckTimeout bounds one /healthz store check. Default 2s.
	CheckTimeout time.Duration
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

// health answers 200 "ok" while the relay runs and the store answers, and 503 with the reason
// otherwise, so an orchestrator restarts a relay that lost its database for good.
func health(cfg Config) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !cfg.Running() {
			http.Error(w, "relay not running", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), cfg.CheckTimeout)
		defer cancel()
		if err := cfg.Ping(ctx); err != nil {
			// The reason stays generic: driver errors may name hosts and users.
			http.Error(w, "store not answering", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
}
