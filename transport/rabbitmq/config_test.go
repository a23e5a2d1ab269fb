package rabbitmq_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/transport/rabbitmq"
)

func TestValidate(t *testing.T) {
	ok := "amqp://guest:guest@127.0.0.1:5672/"
	cases := []struct {
		name  string
		cfg   rabbitmq.Config
		field string // "" means valid
	}{
		{"minimal", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok)}}, ""},
		{"everything", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://u:p@rabbit:5671/prod?heartbeat=5", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", KeyPassword: "x", DialTimeout: time.Second, Heartbeat: 5 * time.Second, ReconnectMin: time.Millisecond, ReconnectMax: time.Second},
			Exchange:        "events",
			RoutingKey:      "ev.{type}.{key}",
			MaxMessageBytes: 1 << 20}, ""},
		{"no URL", rabbitmq.Config{}, "URL"},
		{"http URL", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "http://127.0.0.1:5672/"}}, "URL"},
		{"no host", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp:///vhost"}}, "URL"},
		{"bad port", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp://h:99999/"}}, "URL"},
		{"unencoded password", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqp://u:p#w@h:5672/"}}, "URL"},
		{"long exchange", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok)}, Exchange: strings.Repeat("x", 256)}, "Exchange"},
		{"unknown placeholder", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok)}, RoutingKey: "{tenant}.{type}"}, "RoutingKey"},
		{"stray brace", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok)}, RoutingKey: "a}"}, "RoutingKey"},
		{"negative size", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok)}, MaxMessageBytes: -1}, "MaxMessageBytes"},
		{"huge size", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok)}, MaxMessageBytes: 1 << 30}, "MaxMessageBytes"},
		{"TLS and files", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://h/", TLS: &tls.Config{}, CAFile: "ca.pem"}}, "TLS"},
		{"cert without key", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://h/", CertFile: "c.pem"}}, "KeyFile"},
		{"key without cert", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://h/", KeyFile: "k.pem"}}, "CertFile"},
		{"password without key", rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://h/", KeyPassword: "x"}}, "KeyPassword"},
		{"TLS on amqp", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok), CAFile: "ca.pem"}}, "URL"},
		{"negative dial timeout", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok), DialTimeout: -1}}, "DialTimeout"},
		{"sub-second heartbeat", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok), Heartbeat: time.Millisecond}}, "Heartbeat"},
		{"negative reconnect", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok), ReconnectMin: -1}}, "ReconnectMin"},
		{"reconnect max below min", rabbitmq.Config{Connection: rabbitmq.Connection{URL: rabbitmq.URL(ok), ReconnectMin: time.Second, ReconnectMax: time.Millisecond}}, "ReconnectMax"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != c.field || !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want a ConfigError for %s", err, c.field)
			}
			if _, err := rabbitmq.New(context.Background(), c.cfg); err == nil {
				t.Fatal("New accepted what Validate refused")
			}
		})
	}
}

// Secrets given in Config or ConsumerConfig (the URL's password and unknown query values, the
// TLS key password, a TLS configuration) appear in no description under any verb, no JSON and no
// error, the configs held by value, by pointer and inside another value.
func TestSecretsNeverShown(t *testing.T) {
	const urlPassword, keyPassword, queryToken, certSecret = "url-pass-Zq93", "key-pass-Xw71", "query-tok-Lp55", "tls-config-Vb20"
	secrets := []string{urlPassword, keyPassword, queryToken, certSecret}
	conns := []struct {
		name string
		conn rabbitmq.Connection
	}{
		{"URL password", rabbitmq.Connection{URL: rabbitmq.URL("amqp://outbox:" + urlPassword + "@rabbit:5672/prod")}},
		{"TLS key password", rabbitmq.Connection{URL: rabbitmq.URL("amqps://outbox:" + urlPassword + "@rabbit/"), CertFile: "c.pem", KeyFile: "k.pem", KeyPassword: keyPassword}},
		{"unknown query value", rabbitmq.Connection{URL: rabbitmq.URL("amqp://outbox:" + urlPassword + "@rabbit/?token=" + queryToken + "&heartbeat=5")}},
		{"unparsable URL", rabbitmq.Connection{URL: rabbitmq.URL("amqp://outbox:" + urlPassword + "#@rabbit/")}},
		{"invalid with secrets", rabbitmq.Connection{URL: rabbitmq.URL("amqp://outbox:" + urlPassword + "@rabbit/"), KeyPassword: keyPassword}},
		{"own TLS config", rabbitmq.Connection{URL: rabbitmq.URL("amqps://outbox:" + urlPassword + "@rabbit/"), TLS: &tls.Config{ServerName: certSecret}}},
	}
	jsonOf := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		return string(b)
	}
	for _, c := range conns {
		t.Run(c.name, func(t *testing.T) {
			cfg := rabbitmq.Config{Connection: c.conn, Exchange: "events"}
			consumer := rabbitmq.ConsumerConfig{Connection: c.conn, Queue: "orders", Handler: newCollector().handle}
			holder := struct {
				Config   *rabbitmq.Config
				Consumer *rabbitmq.ConsumerConfig
			}{&cfg, &consumer}
			texts := map[string]string{
				"URL":                  c.conn.URL.String(),
				"URL %x":               fmt.Sprintf("%x", c.conn.URL),
				"URL %q":               fmt.Sprintf("%q", c.conn.URL),
				"holder %s":            fmt.Sprintf("%s", holder),
				"holder %+v":           fmt.Sprintf("%+v", holder),
				"wrapped config error": fmt.Errorf("start with %v: %w", cfg, errors.New("refused")).Error(),
			}
			if c.conn.KeyPassword != "" {
				texts["KeyPassword %x"] = fmt.Sprintf("%x", c.conn.KeyPassword)
			}
			if err := cfg.Validate(); err != nil {
				texts["Validate"] = err.Error()
			}
			if err := consumer.Validate(); err != nil {
				texts["consumer Validate"] = err.Error()
			}
			if tr, err := rabbitmq.New(context.Background(), cfg); err != nil {
				texts["New"] = err.Error()
			} else {
				texts["Transport"] = tr.String()
				texts["Transport %v"] = fmt.Sprintf("%v", tr)
			}
			if cons, err := rabbitmq.NewConsumer(context.Background(), consumer); err != nil {
				texts["NewConsumer"] = err.Error()
			} else {
				texts["Consumer %v"] = fmt.Sprintf("%v", cons)
			}
			for _, v := range []struct {
				what string
				v    any
			}{{"Config", cfg}, {"*Config", &cfg}, {"ConsumerConfig", consumer}, {"*ConsumerConfig", &consumer}} {
				for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
					texts[v.what+" "+verb] = fmt.Sprintf(verb, v.v)
				}
				texts[v.what+" JSON"] = jsonOf(v.v)
			}
			for what, text := range texts {
				for _, s := range secrets {
					if strings.Contains(text, s) {
						t.Errorf("%s shows a secret: %s", what, text)
					}
				}
				if text == "" {
					t.Errorf("%s is empty", what)
				}
			}
			if s := fmt.Sprintf("%v", cfg); !strings.Contains(s, "outbox") && c.name != "unparsable URL" {
				t.Errorf("%%v hides too much: %s", s)
			}
		})
	}
}

// An encrypted client key is decrypted with KeyPassword; a wrong password fails New with an
// error that names the field and not the password.
func TestEncryptedClientKey(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "outbox"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	const password = "client-key-pass-Rt20"
	//lint:ignore SA1019 the transport reads keys openssl encrypted this legacy way.
	block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", keyDER, []byte(password), x509.PEMCipherAES256) //nolint:staticcheck // see above
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := rabbitmq.Config{Connection: rabbitmq.Connection{URL: "amqps://rabbit/", CertFile: certFile, KeyFile: keyFile, KeyPassword: outbox.Secret(password)}}
	tr, err := rabbitmq.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New with the right key password: %v", err)
	}
	_ = tr.Close()

	cfg.KeyPassword = "wrong-pass-Yy88"
	_, err = rabbitmq.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "KeyFile") || strings.Contains(err.Error(), "wrong-pass-Yy88") || strings.Contains(err.Error(), password) {
		t.Fatalf("New with a wrong key password = %v, want an error naming KeyFile without the password", err)
	}
	cfg.KeyPassword = ""
	if _, err = rabbitmq.New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "KeyPassword is empty") {
		t.Fatalf("New with an encrypted key and no password = %v", err)
	}
}
