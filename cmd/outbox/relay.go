package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/cmd/outbox/internal/server"
	"github.com/txoutbox/outbox/cmd/outbox/internal/storeurl"
	"github.com/txoutbox/outbox/envconfig"
)

const relayUsage = `Usage: outbox relay --store URL [--transport sqs|kafka|nats|rabbitmq|memory] [transport flags] [flags]

Runs the relay as a daemon: claims due messages from the store, publishes them to the broker and
acknowledges them, until SIGTERM or SIGINT. Then it stops claiming, lets the batches in flight
finish and be acknowledged within --shutdown-timeout, releases anything unpublished for the next
relay, and exits 0. Several relays may run against one store; they share the work.

While it runs, --listen serves /healthz (200 while the relay runs, the store answers and the
transport is available, else 503 with the reason: "transport unavailable since …") and
Prometheus /metrics. Logs are JSON lines on stderr. --console-addr serves the operator console
(as outbox console does) beside the relay.

In PostgreSQL's WAL mode (--postgres-mode wal) the relay streams the messages from the
replication slot. One relay reads the slot; the others stand by and take it over within about a
second of the reader's death (a healthy standby answers 200). /healthz also fails when the slot
is missing, lost its WAL, lags past --wal-lag-alarm, or nobody reads it while this relay cannot;
/metrics adds the slot's lag and retained WAL in bytes, the age of what this relay has not
confirmed, and whether it holds the slot (outbox_wal_*).`

// relayFlags are the relay's settings: the root package's (zero means outbox.Config's default) and the
// command's own.
type relayFlags struct {
	cfg           outbox.Config
	keepDelivered bool
	listen        string
	logLevel      string
	console       *consoleFlags
	f             *flags
}

func addRelayFlags(f *flags) *relayFlags {
	r := &relayFlags{listen: defaultListen, logLevel: "info", f: f}
	addSettings(f, "relay", &r.cfg, envconfig.RelaySettings())
	addSettings(f, "", r, relayCommandSettings())
	r.console = addConsoleFlags(f, false)
	return r
}

// shutdownTimeout is how long a stop waits for the batches in flight.
func (r *relayFlags) shutdownTimeout() time.Duration {
	if r.cfg.ShutdownTimeout > 0 {
		return r.cfg.ShutdownTimeout
	}
	return outbox.DefaultShutdownTimeout
}

// check validates the tuning flags; problems are usage errors naming the flag.
func (r *relayFlags) check(cmd string) (zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(r.logLevel)
	if err != nil {
		return level, usagef(cmd, "--log-level (OUTBOX_LOG_LEVEL): not debug, info, warn or error")
	}
	if r.cfg.RetainDelivered > 0 && !r.keepDelivered {
		return level, usagef(cmd, "--retain-delivered needs --keep-delivered (without it, published messages are deleted at once)")
	}
	if err := r.cfg.Validate(); err != nil {
		return level, r.f.configError(err)
	}
	if r.listen != "off" {
		if _, _, err := net.SplitHostPort(r.listen); err != nil {
			return level, usagef(cmd, "--listen (OUTBOX_LISTEN): not host:port or off")
		}
	}
	if r.console.addr != "" && r.console.addr != "off" {
		if err := r.console.check(cmd, "console-addr"); err != nil {
			return level, err
		}
	}
	return level, nil
}

func runRelay(ctx context.Context, e *env, args []string) error {
	const cmd = "outbox relay"
	f := newFlags(cmd, relayUsage+"\n"+transportHelp)
	sf := addStoreFlags(f)
	tf := addTransportFlags(f)
	rf := addRelayFlags(f)
	if err := f.parse(e, args, false); err != nil {
		return err
	}
	sf.opts.KeepDelivered = rf.keepDelivered
	target, err := sf.target(cmd)
	if err != nil {
		return err
	}
	if err := tf.check(cmd); err != nil {
		return err
	}
	level, err := rf.check(cmd)
	if err != nil {
		return err
	}
	log := newLogger(e, level)
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return failed(cmd, daemon(ctx, e, log, target, sf.url, tf, rf))
}

// daemon runs the relay until ctx ends, then drains it. /healthz answers from the start: 503
// saying what the relay waits for while it connects, so that a probe sees a live process.
func daemon(ctx context.Context, e *env, log *zap.Logger, target storeurl.Target, rawURL string, tf *transportFlags, rf *relayFlags) error {
	var st startup
	st.set("connecting to the transport (" + tf.kind + ")")
	if rf.listen != "off" {
		srv, err := server.Start(rf.listen, st.serverConfig(target, rawURL))
		if err != nil {
			return fmt.Errorf("listen on %s: %w", rf.listen, err)
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("serving /healthz and /metrics", zap.String("addr", srv.Addr()))
	}
	stopped := func(while string) error {
		log.Info("signal received while "+while+"; exiting: nothing was claimed", zap.String("store", storeurl.Redact(rawURL)))
		return nil
	}

	// The transport first: building it sends nothing, and what it finds wrong in the
	// environment (no AWS region anywhere) is a usage error, reported before any connection.
	transport, closeTransport, err := tf.open(ctx, "outbox relay", e, log, rf.cfg)
	if err != nil {
		var ce *outbox.ConfigError
		if errors.As(err, &ce) {
			return tf.f.configError(err)
		}
		if ctx.Err() != nil {
			return stopped("connecting to the transport")
		}
		return err
	}
	defer closeTransport()
	st.set("connecting to the store")
	store, err := openStore(ctx, target, rawURL)
	if err != nil {
		if ctx.Err() != nil {
			return stopped("connecting to the store")
		}
		return err
	}
	defer func() { _ = store.Close() }()

	cfg := rf.cfg
	cfg.Logger = log
	publishDuration, timePublish := server.NewPublishDuration()
	cfg.Middleware = append(cfg.Middleware, timePublish)
	relay, err := outbox.NewRelay(store.backend, transport, cfg)
	if err != nil {
		return err
	}
	if ko, ok := transport.(outbox.KeyOrderer); !cfg.Unordered && keyOrderHint[tf.kind] != "" && (!ok || !ko.KeepsKeyOrder()) {
		// The relay logs what this costs; the command knows the flag that changes it.
		log.Info("hint: " + keyOrderHint[tf.kind])
	}
	st.opened(store, relay, publishDuration)
	if c := rf.console; c.addr != "" && c.addr != "off" {
		srv, err := serveConsole(c, target.Table(), store.backend, log)
		if err != nil {
			return err
		}
		defer srv.shutdown()
	}

	st.set("starting the relay")
	if err := relay.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return stopped("starting the relay")
		}
		return err
	}
	st.running.Store(true)
	log.Info("relay running", zap.String("store", store.name), zap.String("transport", describe(transport)))

	<-ctx.Done()
	st.running.Store(false)
	st.set("stopping")
	log.Info("signal received; draining", zap.Duration("shutdown_timeout", rf.shutdownTimeout()))
	stopCtx, cancel := context.WithTimeout(context.Background(), rf.shutdownTimeout())
	defer cancel()
	if err := relay.Stop(stopCtx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("in-flight batches outlasted --shutdown-timeout %v; their messages were released and will be published again", rf.shutdownTimeout())
		}
		return err
	}
	s := relay.Stats()
	log.Info("relay drained", zap.Int64("published", s.Published), zap.Int64("failed", s.Failed), zap.Int64("dead", s.Dead))
	return nil
}

// keyOrderHint says how to let an ordered relay send a key's consecutive messages in one batch.
var keyOrderHint = map[string]string{
	"nats":     "--nats-keep-key-order lets a publish carry a key's consecutive messages",
	"rabbitmq": "--rabbitmq-keep-key-order lets a publish carry a key's consecutive messages",
	"sqs":      "a FIFO queue (.fifo) keeps key order by itself",
}

// describe names a transport for logs; the SQS transport's String redacts its credentials.
func describe(t outbox.Transport) string {
	if s, ok := t.(fmt.Stringer); ok {
		return s.String()
	}
	return "memory (envelopes on stdout)"
}

// newLogger returns a zap JSON logger on stderr at level.
func newLogger(e *env, level zap.AtomicLevel) *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = level
	cfg.Sampling = nil // a relay's warnings are rare and each one matters
	cfg.EncoderConfig.TimeKey = "time"
	cfg.EncoderConfig.EncodeTime = zapISOTime
	return zap.New(zapcoreFor(cfg, e.stderr))
}
