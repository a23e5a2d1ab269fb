package storeurl

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary store URLs with a known password: parsing never panics, and neither
// its error nor the redacted URL ever shows the password.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"postgres://u:PASSWORD@h:5432/db?sslmode=disable",
		"mongodb://u:PASSWORD@h1,h2/db?replicaSet=rs0",
		"sqlite:/tmp/x.db",
		"postgres://u:PASSWORD@[::1/db",
		"postgresql://:PASSWORD@/db?sslmode=require",
		"host=h password=PASSWORD",
		"mongodb+srv://u:PASSWORD@cluster/db%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		const secret = "PASSWORD"
		if strings.Count(raw, secret) != 1 || !strings.Contains(raw, ":"+secret+"@") {
			_, _ = Parse(raw, Options{}) // only crashes matter without exactly one marked password
			return
		}
		if _, err := Parse(raw, Options{}); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("Parse(%q) error shows the password: %v", raw, err)
		}
		if red := Redact(raw); strings.Contains(red, secret) {
			t.Fatalf("Redact(%q) = %q shows the password", raw, red)
		}
	})
}
