package nats_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/txoutbox/outbox"
	outboxnats "github.com/txoutbox/outbox/transport/nats"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	seed := userSeed(t)
	cases := []struct {
		name  string
		cfg   outboxnats.Config
		field string // "" = valid
	}{
		{"zero", outboxnats.Config{}, ""},
		{"cluster", outboxnats.Config{Connection: outboxnats.Connection{URL: "nats://10.0.0.1:4222, tls://10.0.0.2:4222,10.0.0.3:4222"}}, ""},
		{"user", outboxnats.Config{Connection: outboxnats.Connection{User: "u", Password: "p"}}, ""},
		{"nkey", outboxnats.Config{Connection: outboxnats.Connection{NKeySeed: outbox.Secret(seed)}}, ""},
		{"routes", outboxnats.Config{Subject: "events.{type}.v1", Routes: map[string]string{"A": "a.b"}, Stream: "EVENTS"}, ""},
		{"bad scheme", outboxnats.Config{Connection: outboxnats.Connection{URL: "http://x:4222"}}, "URL"},
		{"empty server", outboxnats.Config{Connection: outboxnats.Connection{URL: "nats://a:1,,nats://b:2"}}, "URL"},
		{"no host", outboxnats.Config{Connection: outboxnats.Connection{URL: "nats://:4222"}}, "URL"},
		{"two auths", outboxnats.Config{Connection: outboxnats.Connection{Token: "t", NKeySeed: outbox.Secret(seed)}}, "NKeySeed"},
		{"url auth and token", outboxnats.Config{Connection: outboxnats.Connection{URL: "nats://u:p@h:1", Token: "t"}}, "Token"},
		{"password alone", outboxnats.Config{Connection: outboxnats.Connection{Password: "p"}}, "User"},
		{"bad seed", outboxnats.Config{Connection: outboxnats.Connection{NKeySeed: "SUNOTASEED"}}, "NKeySeed"},
		{"account seed", outboxnats.Config{Connection: outboxnats.Connection{NKeySeed: outbox.Secret(accountSeed(t))}}, "NKeySeed"},
		{"bad creds", outboxnats.Config{Connection: outboxnats.Connection{Credentials: "not a creds file"}}, "Credentials"},
		{"conn and url", outboxnats.Config{Connection: outboxnats.Connection{Conn: dummyConn(), URL: "nats://h:1"}}, "URL"},
		{"conn and token", outboxnats.Config{Connection: outboxnats.Connection{Conn: dummyConn(), Token: "t"}}, "Token"},
		{"conn and name", outboxnats.Config{Connection: outboxnats.Connection{Conn: dummyConn(), Name: "n"}}, "Name"},
		{"conn and reconnect wait", outboxnats.Config{Connection: outboxnats.Connection{Conn: dummyConn(), ReconnectWait: time.Second}}, "ReconnectWait"},
		{"conn alone", outboxnats.Config{Connection: outboxnats.Connection{Conn: dummyConn()}, Subject: "a.{type}"}, ""},
		{"tls files", outboxnats.Config{Connection: outboxnats.Connection{URL: "tls://h:4222", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}}, ""},
		{"cert without key", outboxnats.Config{Connection: outboxnats.Connection{CertFile: "c.pem"}}, "KeyFile"},
		{"key without cert", outboxnats.Config{Connection: outboxnats.Connection{KeyFile: "k.pem"}}, "CertFile"},
		{"tls and files", outboxnats.Config{Connection: outboxnats.Connection{TLS: &tls.Config{}, CAFile: "ca.pem"}}, "CAFile"},
		{"conn and tls files", outboxnats.Config{Connection: outboxnats.Connection{Conn: dummyConn(), CAFile: "ca.pem"}}, "CAFile"},
		{"negative timeout", outboxnats.Config{Connection: outboxnats.Connection{ConnectTimeout: -1}}, "ConnectTimeout"},
		{"negative wait", outboxnats.Config{Connection: outboxnats.Connection{ReconnectWait: -1}}, "ReconnectWait"},
		{"name line break", outboxnats.Config{Connection: outboxnats.Connection{Name: "a\nb"}}, "Name"},
		{"subject space", outboxnats.Config{Subject: "a b.{type}"}, "Subject"},
		{"subject wildcard", outboxnats.Config{Subject: "events.>"}, "Subject"},
		{"subject double dot", outboxnats.Config{Subject: "events..{type}"}, "Subject"},
		{"unknown placeholder", outboxnats.Config{Subject: "events.{key}"}, "Subject"},
		{"route empty type", outboxnats.Config{Routes: map[string]string{"": "a"}}, "Routes"},
		{"route bad subject", outboxnats.Config{Routes: map[string]string{"A": "a.*"}}, `Routes["A"]`},
		{"bad stream", outboxnats.Config{Stream: "a.b"}, "Stream"},
		{"negative max bytes", outboxnats.Config{MaxMessageBytes: -1}, "MaxMessageBytes"},
		{"negative pending", outboxnats.Config{MaxPending: -1}, "MaxPending"},
		{"huge pending", outboxnats.Config{MaxPending: outboxnats.MaxPendingLimit + 1}, "MaxPending"},
		{"negative ack timeout", outboxnats.Config{AckTimeout: -time.Second}, "AckTimeout"},
	}
	for _, c := range cases {
		err := c.cfg.Validate()
		if c.field == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v, want nil", c.name, err)
			}
			continue
		}
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v, want a ConfigError for %s", c.name, err, c.field)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "nats: invalid config: ") {
			t.Errorf("%s: error %q does not start with the package", c.name, err)
		}
	}
}

// Secrets given in Config or ConsumerConfig (the URL's user information, Password, Token,
// NKeySeed, Credentials, a TLS configuration) appear under no fmt verb (%v %+v %#v %s, by value,
// by pointer and inside another value), in no JSON, no Validate error, no failed connection's
// error (New's or a Consumer's Start), nor in the Transport's or Consumer's description.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const (
		password  = "pw-outbox-secret-1"
		token     = "tok-outbox-secret-2"
		urlPass   = "url-outbox-secret-3"
		urlToken  = "urltok-outbox-secret-4"
		tlsSecret = "tls-outbox-secret-6"
	)
	seed := userSeed(t)
	jwt := "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.creds-outbox-secret-5.c2ln"
	creds := credsFile(jwt, seed)
	credsPath := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(credsPath, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPrivate(t, "--user", "outbox", "--pass", "the-right-password")

	cases := []struct {
		name    string
		cfg     outboxnats.Config
		secrets []string
	}{
		{"user and password", outboxnats.Config{Connection: outboxnats.Connection{User: "outbox", Password: outbox.Secret(password)}}, []string{password}},
		{"token", outboxnats.Config{Connection: outboxnats.Connection{Token: outbox.Secret(token)}}, []string{token}},
		{"nkey seed", outboxnats.Config{Connection: outboxnats.Connection{NKeySeed: outbox.Secret(seed)}}, []string{seed}},
		{"creds contents", outboxnats.Config{Connection: outboxnats.Connection{Credentials: outbox.Secret(creds)}}, []string{seed, jwt}},
		{"creds file", outboxnats.Config{Connection: outboxnats.Connection{CredsFile: credsPath}}, []string{seed, jwt}},
		{"password in URL", outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL("nats://outbox:" + urlPass + "@" + strings.TrimPrefix(p.url, "nats://"))}}, []string{urlPass}},
		{"password in a URL without scheme", outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL("outbox:" + urlPass + "@" + strings.TrimPrefix(p.url, "nats://"))}}, []string{urlPass}},
		{"token in URL", outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL("nats://" + urlToken + "@" + strings.TrimPrefix(p.url, "nats://"))}}, []string{urlToken}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg.URL == "" {
				cfg.URL = outboxnats.URL(p.url)
			}
			cfg.ConnectTimeout = 2 * time.Second
			consumer := outboxnats.ConsumerConfig{Connection: cfg.Connection, Stream: "S", Durable: "d", Handler: func(context.Context, *outbox.Message) error { return nil }}
			holder := struct {
				Config   *outboxnats.Config
				Consumer *outboxnats.ConsumerConfig
			}{&cfg, &consumer}
			shown := map[string]string{
				"URL %x": fmt.Sprintf("%x", cfg.URL), "URL %q": fmt.Sprintf("%q", cfg.URL),
				"holder %s": fmt.Sprintf("%s", holder), "holder %+v": fmt.Sprintf("%+v", holder),
				"wrapped": fmt.Errorf("start with %v: %w", cfg, errors.New("refused")).Error(),
			}
			for _, v := range []struct {
				what string
				v    any
			}{{"Config", cfg}, {"*Config", &cfg}, {"ConsumerConfig", consumer}, {"*ConsumerConfig", &consumer}} {
				for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
					shown[v.what+" "+verb] = fmt.Sprintf(verb, v.v)
				}
				js, err := json.Marshal(v.v)
				if err != nil {
					t.Fatalf("json.Marshal(%s): %v", v.what, err)
				}
				shown[v.what+" JSON"] = string(js)
			}
			withTLS := cfg
			withTLS.TLS = &tls.Config{ServerName: tlsSecret}
			shown["TLS %s"] = fmt.Sprintf("%s", withTLS)
			shown["TLS %+v"] = fmt.Sprintf("%+v", &withTLS)
			if c, err := outboxnats.NewConsumer(context.Background(), consumer); err != nil {
				shown["NewConsumer"] = err.Error()
			} else {
				shown["Consumer %v"] = fmt.Sprintf("%v", c)
				err := c.Start(context.Background())
				if err == nil || !outbox.IsUnavailable(err) {
					t.Errorf("consumer Start with refused credentials = %v, want an Unavailable error", err)
				}
				shown["Consumer Start error"] = fmt.Sprintf("%v %+v %#v", err, err, err)
			}
			// A Validate error with the secret set: pair it with a bad field.
			bad := cfg
			bad.MaxPending = -1
			shown["Validate"] = fmt.Sprint(bad.Validate())
			bad = cfg
			bad.URL = outboxnats.URL(strings.Replace(cfg.URL.Reveal(), "127.0.0.1", "127.0.0.1:99999:bad", 1))
			shown["Validate URL"] = fmt.Sprint(bad.Validate())

			// The server refuses every one of these credentials: New fails, as an outage.
			_, err := outboxnats.New(context.Background(), cfg)
			if err == nil || !outbox.IsUnavailable(err) {
				t.Errorf("New with refused credentials = %v, want an Unavailable error", err)
			}
			shown["New error"] = fmt.Sprintf("%v %+v %#v", err, err, err)

			for where, text := range shown {
				for _, s := range append(c.secrets, tlsSecret) {
					if strings.Contains(text, s) {
						t.Errorf("%s shows the secret: %s", where, text)
					}
				}
			}
		})
	}

	// The right password connects, and the transport's String hides it too.
	tr := newTransport(t, outboxnats.Config{Connection: outboxnats.Connection{URL: outboxnats.URL(p.url), User: "outbox", Password: "the-right-password"}})
	if s := tr.String() + fmt.Sprintf("%v %+v", tr, tr); strings.Contains(s, "the-right-password") {
		t.Errorf("transport shows the password: %s", s)
	}
}

func userSeed(t testing.TB) string {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

func accountSeed(t testing.TB) string {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

// credsFile is a .creds file as nsc writes it.
func credsFile(jwt, seed string) string {
	return "-----BEGIN NATS USER JWT-----\n" + jwt + "\n------END NATS USER JWT------\n\n" +
		"************************* IMPORTANT *************************\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + seed + "\n------END USER NKEY SEED------\n"
}

// dummyConn stands for a connection of the caller's in checks that never use it.
func dummyConn() *natsgo.Conn { return &natsgo.Conn{} }
