package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Every form a secret can take in a Config, each with its own marker: the test fails when any
// marker (or its unescaped form) shows in any rendering of the config, in its errors or in a
// connection error.
var secretConfigs = []struct {
	name    string
	uri     string
	secrets []string
}{
	{"user password", "mongodb://app:pw-user@127.0.0.1:1/shop?serverSelectionTimeoutMS=200", []string{"pw-user"}},
	{"escaped password", "mongodb://app:pw%2Fesc%40x@127.0.0.1:1/shop?serverSelectionTimeoutMS=200", []string{"pw%2Fesc", "pw/esc", "esc@x"}},
	{"several hosts", "mongodb://app:pw-hosts@127.0.0.1:1,127.0.0.1:2/shop?replicaSet=rs0&serverSelectionTimeoutMS=200", []string{"pw-hosts"}},
	{"AWS session token", "mongodb://AKIDEXAMPLE:aws-secret-key@127.0.0.1:1/shop?authMechanism=MONGODB-AWS&authSource=$external&authMechanismProperties=AWS_SESSION_TOKEN:aws-session-tok&serverSelectionTimeoutMS=200", []string{"aws-secret-key", "aws-session-tok"}},
	{"TLS key password", "mongodb://127.0.0.1:1/shop?tls=true&tlsCertificateKeyFile=/nonexistent/client.pem&tlsCertificateKeyFilePassword=tls-key-pw&serverSelectionTimeoutMS=200", []string{"tls-key-pw"}},
	{"unknown option", "mongodb://127.0.0.1:1/shop?futureSecret=opt-unknown&serverSelectionTimeoutMS=200", []string{"opt-unknown"}},
	{"bad option value", "mongodb://app:pw-bad@127.0.0.1:1/shop?maxPoolSize=notanumber-secret", []string{"pw-bad"}},
	{"srv", "mongodb+srv://app:pw-srv@cluster.invalid/shop?authMechanismProperties=AWS_SESSION_TOKEN:srv-tok", []string{"pw-srv", "srv-tok"}},
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	for _, tt := range secretConfigs {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{URI: tt.uri, ConnectTimeout: time.Second}
			shown := map[string]string{
				"String()": cfg.String(), "GoString()": cfg.GoString(), "RedactURI": RedactURI(tt.uri),
				"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg), "%s": fmt.Sprintf("%s", cfg),
				"pointer %v": fmt.Sprintf("%v", &cfg), "pointer %+v": fmt.Sprintf("%+v", &cfg), "pointer %#v": fmt.Sprintf("%#v", &cfg),
				"in a struct %+v": fmt.Sprintf("%+v", struct{ Store Config }{cfg}),
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
			if strings.HasPrefix(tt.uri, "mongodb+srv://") {
				// Connecting would look the name up in DNS: traffic beyond loopback.
			} else if s, err := New(ctx, cfg); err != nil {
				shown["New error"] = err.Error()
			} else {
				_ = s.Close()
				t.Fatal("connected to a closed port")
			}
			unescaped, _ := url.QueryUnescape(tt.uri)
			shown["driver error quoting the URI"] = redactError(fmt.Errorf("cannot use %s (%s)", tt.uri, unescaped), tt.uri).Error()
			_, token, _ := strings.Cut(tt.uri, "AWS_SESSION_TOKEN:")
			token, _, _ = strings.Cut(token, "&")
			shown["driver error quoting the token"] = redactError(fmt.Errorf("sts refused token %q", token), tt.uri).Error()
			for form, text := range shown {
				for _, secret := range tt.secrets {
					if strings.Contains(text, secret) {
						t.Errorf("%s shows secret %q: %s", form, secret, text)
					}
				}
			}
		})
	}
}

func TestRedactURIKeepsHarmlessOptions(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"mongodb://app:pw@a:1,b:2/shop?replicaSet=rs0&AUTHSOURCE=admin", "mongodb://app:xxxxx@a:1,b:2/shop?replicaSet=rs0&AUTHSOURCE=admin"},
		{"mongodb://h/shop?authMechanismProperties=AWS_SESSION_TOKEN:t&tls=true", "mongodb://h/shop?authMechanismProperties=xxxxx&tls=true"},
		{"host=h password=pw", "(connection string hidden: not a mongodb:// URI)"},
	} {
		if got := RedactURI(tt.in); got != tt.want {
			t.Errorf("RedactURI(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
