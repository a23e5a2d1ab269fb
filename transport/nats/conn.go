package nats

import (
	"context"
	"errors"
	"fmt"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

// connect makes the connection New (or a Consumer's Start) uses when c has no Conn; c has its
// defaults. It reconnects forever, and does not buffer publishes while reconnecting: they fail
// at once and the relay pauses, rather than piling messages into memory whose PubAcks may never
// come. log receives the connection's ups and downs.
func connect(ctx context.Context, c Connection, log *zap.Logger) (*natsgo.Conn, error) {
	opts := []natsgo.Option{
		natsgo.Name(c.Name),
		natsgo.Timeout(c.ConnectTimeout),
		natsgo.ReconnectWait(c.ReconnectWait),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectBufSize(-1),
		natsgo.NoCallbacksAfterClientClose(),
		// Without handlers nats.go prints a server's asynchronous errors (a permissions
		// violation, which leaves the publish without a PubAck) to stderr; they go to the
		// logger, with the connection's ups and downs.
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			log.Warn("nats: asynchronous error from the server", zap.Error(redactErr(err, c.secrets())))
		}),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			log.Warn("nats: disconnected; publishes fail until the connection is back", zap.Error(redactErr(err, c.secrets())))
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("nats: reconnected", zap.String("server", redactURLs(nc.ConnectedUrlRedacted())))
		}),
	}
	if c.TLS != nil {
		opts = append(opts, natsgo.Secure(c.TLS))
	}
	if c.CAFile != "" {
		opts = append(opts, natsgo.RootCAs(c.CAFile))
	}
	if c.CertFile != "" {
		opts = append(opts, natsgo.ClientCert(c.CertFile, c.KeyFile))
	}
	switch {
	case c.User != "":
		opts = append(opts, natsgo.UserInfo(c.User, c.Password.Reveal()))
	case c.Token != "":
		opts = append(opts, natsgo.Token(c.Token.Reveal()))
	case c.NKeySeed != "":
		opt, err := nkeyOption(c.NKeySeed.Reveal())
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	case c.CredsFile != "":
		opts = append(opts, natsgo.UserCredentials(c.CredsFile))
	case c.Credentials != "":
		opts = append(opts, natsgo.UserCredentialBytes([]byte(c.Credentials.Reveal())))
	}

	type result struct {
		nc  *natsgo.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := natsgo.Connect(c.URL.Reveal(), opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, connectError(c, r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() { // the attempt ends within ConnectTimeout; close what it made
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("nats: connect: %w", ctx.Err())
	}
}

// nkeyOption signs the server's challenge with the user NKey of seed.
func nkeyOption(seed string) (natsgo.Option, error) {
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		return nil, errors.New("nats: connect: NKeySeed is not a valid NKey seed")
	}
	pub, err := kp.PublicKey()
	kp.Wipe()
	if err != nil {
		return nil, errors.New("nats: connect: NKeySeed is not a valid NKey seed")
	}
	return natsgo.Nkey(pub, func(nonce []byte) ([]byte, error) {
		kp, err := nkeys.FromSeed([]byte(seed))
		if err != nil {
			return nil, errors.New("NKeySeed is not a valid NKey seed")
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	}), nil
}

// connectError classifies a failed first connection and scrubs it of the config's secrets.
// An unreachable server or refused credentials are an outage: a caller that retries New (a
// supervisor restarting the relay) gets through once the server or its account is fixed.
func connectError(c Connection, err error) error {
	clean := redactErr(err, c.secrets())
	switch {
	case errors.Is(err, natsgo.ErrNoServers), errors.Is(err, natsgo.ErrTimeout),
		errors.Is(err, natsgo.ErrAuthorization), errors.Is(err, natsgo.ErrAuthExpired),
		errors.Is(err, natsgo.ErrAuthRevoked), errors.Is(err, natsgo.ErrAccountAuthExpired),
		errors.Is(err, natsgo.ErrNkeysNotSupported):
		return outbox.Unavailable(fmt.Errorf("nats: connect to %s: %w", c.URL.String(), clean))
	}
	var ne interface{ Timeout() bool } // dial errors
	if errors.As(err, &ne) {
		return outbox.Unavailable(fmt.Errorf("nats: connect to %s: %w", c.URL.String(), clean))
	}
	return fmt.Errorf("nats: connect to %s: %w", c.URL.String(), clean)
}
