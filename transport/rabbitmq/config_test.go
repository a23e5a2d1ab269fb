package rabbitmq_test

import (
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
		{"minimal", rabbitmq.Config{URL: ok}, ""},
		{"everything", rabbitmq.Config{URL: "amqps://u:p@rabbit:5671/prod?heartbeat=5", Exchange: "events", RoutingKey: "ev.{type}.{key}",
			CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", KeyPassword: "x", MaxMessageBytes: 1 << 20,
			DialTimeout: time.Second, Heartbeat: 5 * time.Second, ReconnectMin: time.Millisecond, ReconnectMax: time.Second}, ""},
		{"no URL", rabbitmq.Config{}, "URL"},
		{"http URL", rabbitmq.Config{URL: "http://127.0.0.1:5672/"}, "URL"},
		{"no host", rabbitmq.Config{URL: "amqp:///vhost"}, "URL"},
		{"bad port", rabbitmq.Config{URL: "amqp://h:99999/"}, "URL"},
		{"unencoded password", rabbitmq.Config{URL: "amqp://u:p#w@h:5672/"}, "URL"},
		{"long exchange", rabbitmq.Config{URL: ok, Exchange: strings.Repeat("x", 256)}, "Exchange"},
		{"unknown placeholder", rabbitmq.Config{URL: ok, RoutingKey: "{tenant}.{type}"}, "RoutingKey"},
		{"stray brace", rabbitmq.Config{URL: ok, RoutingKey: "a}"}, "RoutingKey"},
		{"negative size", rabbitmq.Config{URL: ok, MaxMessageBytes: -1}, "MaxMessageBytes"},
		{"huge size", rabbitmq.Config{URL: ok, MaxMessageBytes: 1 << 30}, "MaxMessageBytes"},
		{"TLS and files", rabbitmq.Config{URL: "amqps://h/", TLS: &tls.Config{}, CAFile: "ca.pem"}, "TLS"},
		{"cert without key", rabbitmq.Config{URL: "amqps://h/", CertFile: "c.pem"}, "KeyFile"},
		{"key without cert", rabbitmq.Config{URL: "amqps://h/", KeyFile: "k.pem"}, "CertFile"},
		{"password without key", rabbitmq.Config{URL: "amqps://h/", KeyPassword: "x"}, "KeyPassword"},
		{"TLS on amqp", rabbitmq.Config{URL: ok, CAFile: "ca.pem"}, "URL"},
		{"negative dial timeout", rabbitmq.Config{URL: ok, DialTimeout: -1}, "DialTimeout"},
		{"sub-second heartbeat", rabbitmq.Config{URL: ok, Heartbeat: time.Millisecond}, "Heartbeat"},
		{"negative reconnect", rabbitmq.Config{URL: ok, ReconnectMin: -1}, "ReconnectMin"},
		{"reconnect max below min", rabbitmq.Config{URL: ok, ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, "ReconnectMax"},
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
			if _, err := rabbitmq.New(c.cfg); err == nil {
				t.Fatal("New accepted what Validate refused")
			}
		})
	}
}

// Secrets never appear in any format of a Config or in the errors of a bad one.
func TestSecretsHidden(t *testing.T) {
	const urlPassword, keyPassword, queryToken = "url-pass-Zq93", "key-pass-Xw71", "query-tok-Lp55"
	secrets := []string{urlPassword, keyPassword, queryToken}
	cases := []struct {
		name string
		cfg  rabbitmq.Config
	}{
		{"URL password", rabbitmq.Config{URL: "amqp://outbox:" + urlPassword + "@rabbit:5672/prod"}},
		{"TLS key password", rabbitmq.Config{URL: "amqps://outbox:" + urlPassword + "@rabbit/", CertFile: "c.pem", KeyFile: "k.pem", KeyPassword: keyPassword}},
		{"unknown query value", rabbitmq.Config{URL: "amqp://outbox:" + urlPassword + "@rabbit/?token=" + queryToken + "&heartbeat=5"}},
		{"unparsable URL", rabbitmq.Config{URL: "amqp://outbox:" + urlPassword + "#@rabbit/"}},
		{"invalid with secrets", rabbitmq.Config{URL: "amqp://outbox:" + urlPassword + "@rabbit/", KeyPassword: keyPassword}},
		{"own TLS config", rabbitmq.Config{URL: "amqps://outbox:" + urlPassword + "@rabbit/", TLS: &tls.Config{ServerName: "rabbit"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			js, err := json.Marshal(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			views := map[string]string{
				"String": c.cfg.String(), "GoString": c.cfg.GoString(), "%v": fmt.Sprintf("%v", c.cfg),
				"%+v": fmt.Sprintf("%+v", c.cfg), "%#v": fmt.Sprintf("%#v", c.cfg), "%s": fmt.Sprintf("%s", c.cfg),
				"pointer %v": fmt.Sprintf("%v", &c.cfg), "json": string(js),
			}
			if err := c.cfg.Validate(); err != nil {
				views["Validate"] = err.Error()
			}
			if tr, err := rabbitmq.New(c.cfg); err != nil {
				views["New"] = err.Error()
			} else {
				views["Transport"] = tr.String()
				views["Transport %v"] = fmt.Sprintf("%v", tr)
			}
			for view, text := range views {
				for _, s := range secrets {
					if strings.Contains(text, s) {
						t.Errorf("%s shows a secret: %s", view, text)
					}
				}
			}
			if !strings.Contains(c.cfg.String(), "outbox") && c.name != "unparsable URL" {
				t.Errorf("String hides too much: %s", c.cfg.String())
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
	cfg := rabbitmq.Config{URL: "amqps://rabbit/", CertFile: certFile, KeyFile: keyFile, KeyPassword: password}
	tr, err := rabbitmq.New(cfg)
	if err != nil {
		t.Fatalf("New with the right key password: %v", err)
	}
	_ = tr.Close()

	cfg.KeyPassword = "wrong-pass-Yy88"
	_, err = rabbitmq.New(cfg)
	if err == nil || !strings.Contains(err.Error(), "KeyFile") || strings.Contains(err.Error(), "wrong-pass-Yy88") || strings.Contains(err.Error(), password) {
		t.Fatalf("New with a wrong key password = %v, want an error naming KeyFile without the password", err)
	}
	cfg.KeyPassword = ""
	if _, err = rabbitmq.New(cfg); err == nil || !strings.Contains(err.Error(), "KeyPassword is empty") {
		t.Fatalf("New with an encrypted key and no password = %v", err)
	}
}
