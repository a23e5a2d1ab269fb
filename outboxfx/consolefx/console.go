// Package consolefx serves the operator console (package console, docs/console.md) of an
// application's outbox inside a go.uber.org/fx application, beside outboxfx.Module.
//
// It is a package of its own, not an option of outboxfx, so that an application that runs the
// relay without the console links none of it (its templates, stylesheet and handlers).
package consolefx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/console"
)

// Handler is the operator console (package console) of the application's outbox, as
// Console provides it: an http.Handler of its own type, so that it never collides with the
// application's other handlers in the graph.
type Handler http.Handler

// DefaultName is the outbox's name in the console when Config.Console lists none.
const DefaultName = "outbox"

// Config configures Console.
type Config struct {
	// Addr, when set, is where Console serves the console on a server of its own, started and
	// stopped with the application (127.0.0.1:8081; port 0 picks one, see Server.Addr).
	// An address beyond loopback needs Console.Token. Empty: Console only provides the
	// Handler, for the application's own mux.
	Addr string
	// Console is the console's configuration (docs/console.md). When its Outboxes is empty the
	// console shows the application's outbox.Store as DefaultName; when its Logger is
	// nil it logs through the application's *zap.Logger, if it provides one.
	Console console.Config
}

// Server is the console's own server, provided when Config.Addr is set.
type Server struct {
	addr string
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// Addr is the address the server listens on, once the application has started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Console returns an option that provides the operator console of the application's outbox as a
// Handler and, when cfg.Addr is set, serves it there.
//
// An fx service usually owns one HTTP server and mounts what it serves on its mux; the console,
// being an operator's page, is as often kept off the public listener, on loopback or an admin
// port. So both are offered: with an empty Addr the option only provides the handler, to be
// mounted with http.StripPrefix (every link it writes is relative), and the service decides who
// reaches it; with Addr it also runs a server of its own whose OnStart listens (so a busy or
// forbidden address fails the start) and whose OnStop lets requests in flight finish within the
// stop context.
//
//	fx.New(
//		fx.Provide(newStore, newTransport, zap.NewProduction, outboxfx.ConfigFromEnv),
//		outboxfx.Module,
//		consolefx.Console(consolefx.Config{
//			Addr:    "127.0.0.1:8081",
//			Console: console.Config{Token: outbox.Secret(os.Getenv("OUTBOX_CONSOLE_TOKEN"))},
//		}),
//	)
//
// An invalid console configuration fails the application at construction, naming the field.
func Console(cfg Config) fx.Option {
	opts := []fx.Option{fx.Provide(func(p params) (Handler, error) { return newConsole(p, cfg) })}
	if cfg.Addr != "" {
		opts = append(opts,
			fx.Provide(func(lc fx.Lifecycle, h Handler, p params) (*Server, error) {
				return newServer(lc, h, p.logger(cfg), cfg)
			}),
			fx.Invoke(func(*Server) {}),
		)
	}
	return fx.Module("outbox-console", opts...)
}

// params is what Console consumes from the application.
type params struct {
	fx.In

	Store  outbox.Store `optional:"true"`
	Logger *zap.Logger  `optional:"true"`
}

func (p params) logger(cfg Config) *zap.Logger {
	switch {
	case cfg.Console.Logger != nil:
		return cfg.Console.Logger
	case p.Logger != nil:
		return p.Logger
	}
	return zap.NewNop()
}

func newConsole(p params, cfg Config) (Handler, error) {
	cc := cfg.Console
	if len(cc.Outboxes) == 0 {
		if p.Store == nil {
			return nil, fmt.Errorf("consolefx: %w", &outbox.ConfigError{Component: "console", Field: "Outboxes",
				Problem: "is empty and the application provides no outbox.Store"})
		}
		cc.Outboxes = []console.Outbox{{Name: DefaultName, Store: p.Store}}
	}
	cc.Logger = p.logger(cfg)
	h, err := console.New(cc)
	if err != nil {
		return nil, fmt.Errorf("consolefx: %w", err)
	}
	return h, nil
}

func newServer(lc fx.Lifecycle, h Handler, log *zap.Logger, cfg Config) (*Server, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("consolefx: %w", &outbox.ConfigError{Component: "console", Field: "Addr", Problem: "is not host:port"})
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) && cfg.Console.Token == "" {
		return nil, fmt.Errorf("consolefx: %w", &outbox.ConfigError{Component: "console", Field: "Addr",
			Problem: fmt.Sprintf("%q is not a loopback address: set Console.Token to serve the console beyond this machine", host)})
	}
	s := &Server{addr: cfg.Addr, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("outbox.console")),
	}}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			var lcfg net.ListenConfig
			ln, err := lcfg.Listen(ctx, "tcp", s.addr)
			if err != nil {
				return fmt.Errorf("consolefx: console: %w", err)
			}
			s.ln = ln
			go func() {
				defer close(s.done)
				if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("outbox console server failed", zap.Error(err))
				}
			}()
			log.Info("serving the outbox console", zap.String("addr", ln.Addr().String()))
			return nil
		},
		OnStop: func(ctx context.Context) error {
			err := s.srv.Shutdown(ctx)
			if err != nil {
				_ = s.srv.Close()
			}
			<-s.done
			return err
		},
	})
	return s, nil
}
