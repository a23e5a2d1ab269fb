package backend_test

import (
	"strings"
	"testing"

	"github.com/txoutbox/outbox/backend"
)

func TestURLRedactor(t *testing.T) {
	r := backend.URLRedactor{Harmless: []string{"sslmode", "replicaSet"}}
	for _, tt := range []struct{ in, want string }{
		{"postgres://u:pw1@h:5432/db", "postgres://u:xxxxx@h:5432/db"},
		{"postgres://u@h/db?sslmode=require&sslpassword=pw2", "postgres://u@h/db?sslmode=require&sslpassword=xxxxx"},
		{"mongodb://u:p%40w3@a:1,b:2/app?REPLICASET=rs0&authMechanismProperties=AWS_SESSION_TOKEN:tok4", "mongodb://u:xxxxx@a:1,b:2/app?REPLICASET=rs0&authMechanismProperties=xxxxx"},
		{"postgres://u:p/w?x@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://h/db?password=pw5@x", "postgres://xxxxx:xxxxx@x"},
		{"postgres://h/db?tokenonly", "postgres://h/db?xxxxx"},
		{"postgres://h/db#frag6", "postgres://h/db#xxxxx"},
		{"postgres://h/db", "postgres://h/db"},
	} {
		got, ok := r.Redact(tt.in)
		if !ok || got != tt.want {
			t.Errorf("Redact(%q) = %q, %t; want %q", tt.in, got, ok, tt.want)
		}
		text := backend.ScrubSecrets("driver said: "+tt.in+" and "+strings.ReplaceAll(tt.in, "%40", "@"), r.Secrets(tt.in))
		for _, secret := range []string{"pw1", "pw2", "p@w3", "tok4", "pw5", "tokenonly", "frag6"} {
			if strings.Contains(got, secret) || strings.Contains(text, secret) {
				t.Errorf("%q: secret %q shows in %q or %q", tt.in, secret, got, text)
			}
		}
	}
	if _, ok := r.Redact("host=h password=pw"); ok {
		t.Error("a key=value string passed as a URL")
	}
	if got := backend.ScrubSecrets("a secret, ab", []string{"ab", "secret"}); got != "a xxxxx, ab" {
		t.Errorf("ScrubSecrets = %q", got)
	}
}
