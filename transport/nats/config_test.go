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
		{"cluster", outboxnats.Config{URL: "nats://10.0.0.1:4222, tls://10.0.0.2:4222,10.0.0.3:4222"}, ""},
		{"user", outboxnats.Config{User: "u", Password: "p"}, ""},
		{"nkey", outboxnats.Config{NKeySeed: seed}, ""},
		{"routes", outboxnats.Config{Subject: "events.{type}.v1", Routes: map[string]string{"A": "a.b"}, Stream: "EVENTS"}, ""},
		{"bad scheme", outboxnats.Config{URL: "http://x:4222"}, "URL"},
		{"empty server", outboxnats.Config{URL: "nats://a:1,,nats://b:2"}, "URL"},
		{"no host", outboxnats.Config{URL: "nats://:4222"}, "URL"},
		{"two auths", outboxnats.Config{Token: "t", NKeySeed: seed}, "NKeySeed"},
		{"url auth and token", outboxnats.Config{URL: "nats://u:p@h:1", Token: "t"}, "Token"},
		{"password alone", outboxnats.Config{Password: "p"}, "User"},
		{"bad seed", outboxnats.Config{NKeySeed: "SUNOTASEED"}, "NKeySeed"},
		{"account seed", outboxnats.Config{NKeySeed: accountSeed(t)}, "NKeySeed"},
		{"bad creds", outboxnats.Config{Credentials: "not a creds file"}, "Credentials"},
		{"conn and url", outboxnats.Config{Conn: dummyConn(), URL: "nats://h:1"}, "URL"},
		{"conn and token", outboxnats.Config{Conn: dummyConn(), Token: "t"}, "Token"},
		{"conn and name", outboxnats.Config{Conn: dummyConn(), Name: "n"}, "Name"},
		{"conn and reconnect wait", outboxnats.Config{Conn: dummyConn(), ReconnectWait: time.Second}, "ReconnectWait"},
		{"conn alone", outboxnats.Config{Conn: dummyConn(), Subject: "a.{type}"}, ""},
		{"tls files", outboxnats.Config{URL: "tls://h:4222", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, ""},
		{"cert without key", outboxnats.Config{CertFile: "c.pem"}, "KeyFile"},
		{"key without cert", outboxnats.Config{KeyFile: "k.pem"}, "CertFile"},
		{"tls and files", outboxnats.Config{TLS: &tls.Config{}, CAFile: "ca.pem"}, "CAFile"},
		{"conn and tls files", outboxnats.Config{Conn: dummyConn(), CAFile: "ca.pem"}, "CAFile"},
		{"negative timeout", outboxnats.Config{ConnectTimeout: -1}, "ConnectTimeout"},
		{"negative wait", outboxnats.Config{ReconnectWait: -1}, "ReconnectWait"},
		{"name line break", outboxnats.Config{Name: "a\nb"}, "Name"},
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

// Secrets never appear in String, GoString, any fmt verb, JSON, a Validate error, a failed
// connection's error, or the Transport's String.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const (
		password = "pw-outbox-secret-1"
		token    = "tok-outbox-secret-2"
		urlPass  = "url-outbox-secret-3"
		urlToken = "urltok-outbox-secret-4"
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
		{"user and password", outboxnats.Config{User: "outbox", Password: password}, []string{password}},
		{"token", outboxnats.Config{Token: token}, []string{token}},
		{"nkey seed", outboxnats.Config{NKeySeed: seed}, []string{seed}},
		{"creds contents", outboxnats.Config{Credentials: creds}, []string{seed, jwt}},
		{"creds file", outboxnats.Config{CredsFile: credsPath}, []string{seed, jwt}},
		{"password in URL", outboxnats.Config{URL: "nats://outbox:" + urlPass + "@" + strings.TrimPrefix(p.url, "nats://")}, []string{urlPass}},
		{"password in a URL without scheme", outboxnats.Config{URL: "outbox:" + urlPass + "@" + strings.TrimPrefix(p.url, "nats://")}, []string{urlPass}},
		{"token in URL", outboxnats.Config{URL: "nats://" + urlToken + "@" + strings.TrimPrefix(p.url, "nats://")}, []string{urlToken}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			if cfg.URL == "" {
				cfg.URL = p.url
			}
			cfg.ConnectTimeout = 2 * time.Second
			js, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			shown := map[string]string{
				"String": cfg.String(), "GoString": cfg.GoString(), "%v": fmt.Sprintf("%v", cfg),
				"%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg), "%s": fmt.Sprintf("%s", cfg),
				"pointer %v": fmt.Sprintf("%v", &cfg), "JSON": string(js),
			}
			// A Validate error with the secret set: pair it with a bad field.
			bad := cfg
			bad.MaxPending = -1
			shown["Validate"] = fmt.Sprint(bad.Validate())
			bad = cfg
			bad.URL = strings.Replace(cfg.URL, "127.0.0.1", "127.0.0.1:99999:bad", 1)
			shown["Validate URL"] = fmt.Sprint(bad.Validate())

			// The server refuses every one of these credentials: New fails, as an outage.
			_, err = outboxnats.New(context.Background(), cfg)
			if err == nil || !outbox.IsUnavailable(err) {
				t.Errorf("New with refused credentials = %v, want an Unavailable error", err)
			}
			shown["New error"] = fmt.Sprintf("%v %+v %#v", err, err, err)

			for where, text := range shown {
				for _, s := range c.secrets {
					if strings.Contains(text, s) {
						t.Errorf("%s shows the secret: %s", where, text)
					}
				}
			}
		})
	}

	// The right password connects, and the transport's String hides it too.
	tr := newTransport(t, outboxnats.Config{URL: p.url, User: "outbox", Password: "the-right-password"})
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
