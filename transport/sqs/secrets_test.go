package sqs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/txoutbox/outbox/transport/sqs"
)

// Every place a secret can sit in the SQS configs, each with its own marker: the test fails
// when any marker shows in any rendering of a Config or ConsumerConfig (%v %+v %#v %s, by value,
// by pointer and inside another value, JSON), in its validation error, in New's error or in the
// transport's own String.
var secretConfigs = []struct {
	name    string
	cfg     sqs.Config
	secrets []string
}{
	{"static credentials", sqs.Config{Connection: sqs.Connection{Region: "local", Endpoint: "http://127.0.0.1:1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-access-key"}, QueueURL: "orders"}, []string{"AKIDEXAMPLE", "secret-access-key"}},
	{"own AWS config", sqs.Config{Connection: sqs.Connection{AWSConfig: &aws.Config{Region: "local",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDAWSCONFIG", "aws-config-secret", "")}}, QueueURL: "orders"}, []string{"AKIDAWSCONFIG", "aws-config-secret"}},
	{"session token", sqs.Config{Connection: sqs.Connection{Region: "local", Endpoint: "http://127.0.0.1:1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "secret-key-2", SessionToken: "session-token-2"}, QueueURL: "orders"}, []string{"secret-key-2", "session-token-2"}},
	{"token in an endpoint query", sqs.Config{Connection: sqs.Connection{Region: "local", Endpoint: "http://127.0.0.1:1/?X-Amz-Security-Token=query-token"}, QueueURL: "orders"}, []string{"query-token"}},
	{"user information in a queue URL", sqs.Config{Connection: sqs.Connection{Region: "local"}, QueueURL: "http://me:url-password@127.0.0.1:1/000/orders"}, []string{"url-password"}},
	{"mangled queue name", sqs.Config{Connection: sqs.Connection{Region: "local"}, QueueURL: "me:name-password@127.0.0.1/orders"}, []string{"name-password"}},
	{"bad endpoint scheme", sqs.Config{Connection: sqs.Connection{Region: "local", Endpoint: "ftp://127.0.0.1:1/?token=scheme-token"}, QueueURL: "orders"}, []string{"scheme-token"}},
	{"routes", sqs.Config{Connection: sqs.Connection{Region: "local", AccessKeyID: "AK", SecretAccessKey: "route-secret"}, Routes: map[string]string{"A": "http://127.0.0.1:1/000/a?sig=route-sig"}}, []string{"route-sig", "route-secret"}},
}

func TestConfigNeverShowsSecrets(t *testing.T) {
	for _, tt := range secretConfigs {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cc := sqs.ConsumerConfig{Connection: cfg.Connection, QueueURL: cfg.QueueURL}
			holder := struct {
				Config   *sqs.Config
				Consumer *sqs.ConsumerConfig
			}{&cfg, &cc}
			shown := map[string]string{
				"holder %s": fmt.Sprintf("%s", holder), "holder %+v": fmt.Sprintf("%+v", holder),
				"wrapped":   fmt.Errorf("start with %v: %w", cfg, errors.New("refused")).Error(),
				"secret %x": fmt.Sprintf("%x %x %x", cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken),
			}
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
