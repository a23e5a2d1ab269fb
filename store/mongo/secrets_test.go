package mongo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
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

// renderings are every way a Config reaches a log, an output or an error: the fmt verbs, on
// the value, a pointer and a struct holding it, and JSON (what zap.Reflect writes).
func renderings(t *testing.T, cfg Config) map[string]string {
	t.Helper()
	shown := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d", "%t"} {
		shown[verb] = fmt.Sprintf(verb, cfg)
		shown["pointer "+verb] = fmt.Sprintf(verb, &cfg)
		shown["in a struct "+verb] = fmt.Sprintf(verb, struct{ Store Config }{cfg})
		shown["pointer in a struct "+verb] = fmt.Sprintf(verb, struct{ Store *Config }{&cfg})
		shown["pointer in an interface "+verb] = fmt.Sprintf(verb, struct{ Store any }{&cfg})
	}
	shown["in an error"] = fmt.Errorf("start: %v", cfg).Error()
	for name, v := range map[string]any{"json": cfg, "json pointer": &cfg, "json in a map": map[string]any{"store": cfg}} {
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		shown[name] = string(out)
	}
	return shown
}

// TestConfigNeverShowsSecrets puts every config of the module, with each form a secret can
// take, through every rendering, its validation and its connection error.
func TestConfigNeverShowsSecrets(t *testing.T) {
	hook := func(context.Context, *outbox.Message) {}
	for _, tt := range secretConfigs {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{URI: URI(tt.uri), ConnectTimeout: time.Second, WriteHooks: []backend.WriteHook{hook}}
			shown := renderings(t, cfg)
			shown["RedactURI"] = RedactURI(tt.uri)
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
			shown["driver error quoting the URI"] = redactError(fmt.Errorf("cannot use %s (%s)", tt.uri, unescaped), cfg.URI).Error()
			_, token, _ := strings.Cut(tt.uri, "AWS_SESSION_TOKEN:")
			token, _, _ = strings.Cut(token, "&")
			shown["driver error quoting the token"] = redactError(fmt.Errorf("sts refused token %q", token), cfg.URI).Error()
			for form, text := range shown {
				for _, secret := range tt.secrets {
					if strings.Contains(text, secret) {
						t.Errorf("%s shows secret %q: %s", form, secret, text)
					}
				}
			}
			// What is not secret still shows, so the config is worth logging.
			if v := shown["%+v"]; !strings.Contains(v, "127.0.0.1:1") && !strings.Contains(v, "cluster.invalid") {
				t.Errorf("%%+v lost the host: %s", v)
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
