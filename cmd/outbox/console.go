package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/console"
	"github.com/txoutbox/outbox/envconfig"
)

const consoleUsage = `Usage: outbox console --store URL [--listen 127.0.0.1:8081] [--read-only] [--hide-payloads]

Serves the operator console (docs/console.md) for the store until SIGTERM or SIGINT: the
overview of pending, dead and delivered messages, the dead letters with their errors, and their
requeue and purge with a confirm step, as pages and as a JSON API under /api/.

Every mutation needs the token in OUTBOX_CONSOLE_TOKEN (at least 16 bytes; from the environment
only): the pages ask for it once (login), the API takes it as "Authorization: Bearer TOKEN".
Without a token the console is read-only. It listens on loopback unless --listen names another
address, which it refuses without a token: reading needs no credentials, so who can reach the
console is who can read the outbox (and its payloads, unless --hide-payloads).

"outbox relay --console-addr 127.0.0.1:8081" serves the same console beside the relay.`

// defaultConsoleAddr is where outbox console listens unless --listen says otherwise.
const defaultConsoleAddr = "127.0.0.1:8081"

// consoleFlags are the console's settings, shared by outbox console and outbox relay.
type consoleFlags struct {
	addr         string
	token        string
	readOnly     bool
	hidePayloads bool
}

// addConsoleFlags offers the console's settings. The relay names its flags as the variables
// (--console-addr); the console command drops the "console-" prefix (--listen for the address,
// --read-only), since every flag of that command is the console's.
func addConsoleFlags(f *flags, standalone bool) *consoleFlags {
	c := &consoleFlags{}
	if !standalone {
		addSettings(f, "console", c, consoleSettings())
		return c
	}
	c.addr = defaultConsoleAddr
	for _, s := range consoleSettings() {
		set := func(v string) error { return s.Set(c, strings.TrimSpace(v)) }
		if s.Kind == envconfig.KindSecret {
			f.secrets = append(f.secrets, secretVar{env: s.Env, set: set})
			continue
		}
		name := strings.TrimPrefix(s.Flag(), "console-")
		usage, _, _ := strings.Cut(s.Doc, " (outbox console: ") // this is outbox console
		if name == "addr" {
			name, usage = "listen", "address the console listens on (default "+defaultConsoleAddr+")"
		}
		f.fs.Var(&settingValue{set: set, isBool: s.Kind == envconfig.KindBool}, name, usage)
		f.env(name, s.Env)
		f.kinds[name] = s.Kind
	}
	return c
}

// check refuses a console that would let anyone reach it change the outbox, or whose token is
// too short; flag names the address flag (--listen or --console-addr).
func (c *consoleFlags) check(cmd, flag string) error {
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return usagef(cmd, "--%s (OUTBOX_CONSOLE_ADDR): not host:port", flag)
	}
	if c.token != "" && len(c.token) < console.MinTokenLength {
		return usagef(cmd, "OUTBOX_CONSOLE_TOKEN: is shorter than %d bytes", console.MinTokenLength)
	}
	if !isLoopback(host) && c.token == "" {
		return usagef(cmd, "--%s (OUTBOX_CONSOLE_ADDR): %q is not a loopback address: set OUTBOX_CONSOLE_TOKEN to serve the console beyond this machine (and put it behind TLS)", flag, host)
	}
	return nil
}

// isLoopback reports whether host (of host:port) reaches this machine only; "" is every interface.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// config is the console.Config showing store under name; without a token it is read-only.
func (c *consoleFlags) config(name string, store outbox.Store, log *zap.Logger) console.Config {
	if len(name) > 64 {
		name = name[len(name)-64:]
	}
	return console.Config{
		Outboxes:     []console.Outbox{{Name: name, Store: store}},
		Token:        outbox.Secret(c.token),
		ReadOnly:     c.readOnly || c.token == "",
		HidePayloads: c.hidePayloads,
		Logger:       log.Named("console"),
	}
}

// consoleServer is the console's listener and HTTP server.
type consoleServer struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// serveConsole starts serving the console for store at c.addr and logs its address.
func serveConsole(c *consoleFlags, name string, store outbox.Store, log *zap.Logger) (*consoleServer, error) {
	cfg := c.config(name, store, log)
	h, err := console.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("console: listen on %s: %w", c.addr, err)
	}
	s := &consoleServer{ln: ln, done: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("console")),
	}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("console server failed", zap.Error(err))
		}
	}()
	mode := "read-write"
	if cfg.ReadOnly {
		mode = "read-only"
	}
	if c.token == "" && !c.readOnly {
		log.Info("no OUTBOX_CONSOLE_TOKEN: the console is read-only")
	}
	log.Info("serving the console", zap.String("addr", ln.Addr().String()), zap.String("mode", mode), zap.Bool("hide_payloads", cfg.HidePayloads))
	return s, nil
}

// shutdown stops accepting, lets requests in flight finish within 5s, and waits for the server.
func (s *consoleServer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	<-s.done
}

func runConsole(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox console"
	f := newFlags(cmd, consoleUsage)
	sf := addStoreFlags(f)
	cf := addConsoleFlags(f, true)
	logLevel := "info"
	f.fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.env("log-level", "OUTBOX_LOG_LEVEL")
	timeout := f.fs.Duration("timeout", 30*time.Second, "bound on connecting to the store")
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	target, err := sf.target(cmd)
	if err != nil {
		return err
	}
	if err := cf.check(cmd, "listen"); err != nil {
		return err
	}
	level, err := zap.ParseAtomicLevel(logLevel)
	if err != nil {
		return usagef(cmd, "--log-level (OUTBOX_LOG_LEVEL): not debug, info, warn or error")
	}
	log := newLogger(e, level)
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	openCtx, cancel := context.WithTimeout(ctx, *timeout)
	store, err := openStore(openCtx, target, sf.url)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return failed(cmd, err)
	}
	defer func() { _ = store.Close() }()
	if err := store.checkSchema(ctx); err != nil {
		return failed(cmd, err)
	}
	srv, err := serveConsole(cf, consoleName(target), store.backend, log)
	if err != nil {
		return failed(cmd, err)
	}
	<-ctx.Done()
	log.Info("signal received; stopping the console")
	srv.shutdown()
	return nil
}

// consoleName is the outbox's name in the console: its table (schema.table, database.collection).
func consoleName(t storeurl.Target) string { return t.Table() }
