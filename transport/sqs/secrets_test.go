package sqs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox/transport/sqs"
)

// Every place a secret can sit in the SQS configs, each with its own marker: the test fails
// when any marker shows in any rendering of a config, in its validation error, in New's error or
// in the transport's own String.
var secretConfigs = []struct {
	name    string
	cfg     sqs.Config
	secrets []string
}{
	{"static credentials", sqs.Config{QueueURL: "orders", Region: "local", Endpoint: "http://127.0.0.1:1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-access-key"}, []string{"secret-access-key"}},
	{"session token", sqs.Config{QueueURL: "orders", Region: "local", Endpoint: "http://127.0.0.1:1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-key-2", SessionToken: "session-token-2"}, []string{"secret-key-2", "session-token-2"}},
	{"token in an endpoint query", sqs.Config{QueueURL: "orders", Region: "local", Endpoint: "http://127.0.0.1:1/?X-Amz-Security-Token=query-token"}, []string{"query-token"}},
	{"user information in a queue URL", sqs.Config{QueueURL: "http://me:url-password@127.0.0.1:1/000/orders", Region: "local"}, []string{"url-password"}},
	{"mangled queue name", sqs.Config{QueueURL: "me:name-password@127.0.0.1/orders", Region: "local"}, []string{"name-password"}},
	{"bad endpoint scheme", sqs.Config{QueueURL: "orders", Region: "local", Endpoint: "ftp://127.0.0.1:1/?token=scheme-token"}, []string{"scheme-token"}},
	{"routes", sqs.Config{Routes: map[string]string{"A": "http://127.0.0.1:1/000/a?sig=route-sig"}, Region: "local", AccessKeyID: "AK", SecretAccessKey: "route-secret"}, []string{"route-sig", "route-secret"}},
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	for _, tt := range secretConfigs {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cc := sqs.ConsumerConfig{QueueURL: cfg.QueueURL, Region: cfg.Region, AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, SessionToken: cfg.SessionToken, Endpoint: cfg.Endpoint}
			shown := map[string]string{}
			for kind, v := range map[string]any{"Config": cfg, "ConsumerConfig": cc} {
				for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
					shown[kind+" "+verb] = fmt.Sprintf(verb, v)
				}
				shown[kind+" in a struct"] = fmt.Sprintf("%+v", struct{ C any }{v})
				out, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("json of %s: %v", kind, err)
				}
				shown[kind+" json"] = string(out)
			}
			shown["Config pointer %+v"], shown["ConsumerConfig pointer %#v"] = fmt.Sprintf("%+v", &cfg), fmt.Sprintf("%#v", &cc)
			if out, err := json.Marshal(&cfg); err == nil {
				shown["Config pointer json"] = string(out)
			}
			if err := cfg.Validate(); err != nil {
				shown["Validate"] = err.Error()
			}
			if err := cc.Validate(); err != nil {
				shown["ConsumerConfig Validate"] = err.Error()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tr, err := sqs.New(ctx, cfg); err != nil {
				shown["New error"] = err.Error()
			} else {
				shown["Transport String"] = tr.String()
				shown["Transport %#v"] = fmt.Sprintf("%v", tr)
				_ = tr.Close()
			}
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
