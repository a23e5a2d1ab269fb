package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/store/postgres"
)

// Every form a secret can take in a Config, each with its own marker: a test fails when any
// marker (or its unescaped form) shows in any rendering of the config or in its errors.
var secretConfigs = []struct {
	name    string
	cfg     postgres.Config
	secrets []string
}{
	{"URL password", postgres.Config{URL: "postgres://app:pw-in-url@127.0.0.1:1/db"}, []string{"pw-in-url"}},
	{"URL escaped password", postgres.Config{URL: "postgresql://app:pw%40esc%2Fd@127.0.0.1:1/db"}, []string{"pw%40esc", "pw@esc", "esc/d"}},
	{"URL unescaped odd password", postgres.Config{URL: "postgres://app:pw/odd?@127.0.0.1:1/db"}, []string{"pw/odd"}},
	{"URL ?password=", postgres.Config{URL: "postgres://app@127.0.0.1:1/db?sslmode=disable&password=pw-in-query"}, []string{"pw-in-query"}},
	{"URL ?sslpassword=", postgres.Config{URL: "postgres://app@127.0.0.1:1/db?sslpassword=sslpw-in-query"}, []string{"sslpw-in-query"}},
	{"URL unknown parameter", postgres.Config{URL: "postgres://app@127.0.0.1:1/db?future_token=tok-unknown"}, []string{"tok-unknown"}},
	{"URL options", postgres.Config{URL: "postgres://app@127.0.0.1:1/db?options=-c%20secret%3Dopt-secret"}, []string{"opt-secret"}},
	{"URL several hosts", postgres.Config{URL: "postgres://app:pw-multi@127.0.0.1:1,127.0.0.1:2/db"}, []string{"pw-multi"}},
	{"key=value password", postgres.Config{URL: "host=127.0.0.1 port=1 user=app password=kv-pw dbname=db"}, []string{"kv-pw"}},
	{"key=value quoted", postgres.Config{URL: "host=127.0.0.1 port=1 password = 'kv quoted\\'pw' sslpassword='kv-sslpw'"}, []string{"kv quoted", "quoted'pw", "kv-sslpw"}},
	{"Password field", postgres.Config{Host: "127.0.0.1", Port: 1, User: "app", Password: "field-pw"}, []string{"field-pw"}},
	{"ListenURL", postgres.Config{URL: "postgres://app@127.0.0.1:1/db", ListenURL: "postgres://app:listen-pw@127.0.0.1:1/db?sslpassword=listen-sslpw"}, []string{"listen-pw", "listen-sslpw"}},
	{"WAL ReplicationURL", postgres.Config{URL: "postgres://app@127.0.0.1:1/db", WAL: &postgres.WALConfig{ReplicationURL: "postgres://repl:repl-pw@127.0.0.1:1/db"}}, []string{"repl-pw"}},
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	for _, tt := range secretConfigs {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			shown := map[string]string{
				"String()": cfg.String(), "GoString()": cfg.GoString(),
				"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg), "%s": fmt.Sprintf("%s", cfg), //nolint:staticcheck // the %s verb is the case under test
				"pointer %v": fmt.Sprintf("%v", &cfg), "pointer %+v": fmt.Sprintf("%+v", &cfg), "pointer %#v": fmt.Sprintf("%#v", &cfg),
				"in a struct %+v": fmt.Sprintf("%+v", struct{ Store postgres.Config }{cfg}),
				"in a slice %v":   fmt.Sprintf("%v", []postgres.Config{cfg}),
			}
			for name, v := range map[string]any{"json": cfg, "json pointer": &cfg, "json in a map": map[string]any{"store": cfg}} {
				out, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				shown[name] = string(out)
			}
			if err := cfg.Validate(); err != nil {
				shown["Validate"] = err.Error()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c := cfg
			c.ConnectTimeout = time.Second
			if s, err := postgres.New(ctx, c); err != nil {
				shown["New error"] = err.Error()
			} else {
				_ = s.Close()
				t.Fatal("connected to a closed port")
			}
			for form, text := range shown {
				for _, secret := range tt.secrets {
					if strings.Contains(text, secret) {
						t.Errorf("%s shows secret %q: %s", form, secret, text)
					}
				}
			}
			var back map[string]any
			if err := json.Unmarshal([]byte(shown["json"]), &back); err != nil || back["Schema"] != nil && back["Schema"] != cfg.Schema {
				t.Errorf("json %s is not the config's fields: %v", shown["json"], err)
			}
		})
	}
}

// Redaction keeps what is harmless, so logs stay useful.
func TestRedactConnStringKeepsHarmlessParts(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"postgres://app:pw@db.internal:5432/shop?sslmode=require&application_name=relay", "postgres://app:xxxxx@db.internal:5432/shop?sslmode=require&application_name=relay"},
		{"postgres://app@h/shop?password=pw&sslpassword=pw2&x=1", "postgres://app@h/shop?password=xxxxx&sslpassword=xxxxx&x=xxxxx"},
		{"host=h port=5432 dbname=shop user=app password='p w' sslmode=disable", "host=h port=5432 dbname=shop user=app password=xxxxx sslmode=disable"},
		{"host=h password='unterminated", "(connection string hidden: it does not parse)"},
		{"just some words", "(connection string hidden: it does not parse)"},
	} {
		if got := postgres.RedactConnString(tt.in); got != tt.want {
			t.Errorf("RedactConnString(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	cfg := postgres.Config{URL: "postgres://app:pw@h/shop", Schema: "billing", Table: "events", KeepDelivered: true}
	if got, want := cfg.String(), "postgres.Config{url=postgres://app:xxxxx@h/shop schema=billing table=events keep_delivered=true}"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
