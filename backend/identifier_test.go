package backend_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

var identifierRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func TestCheckIdentifier(t *testing.T) {
	for name, ok := range map[string]bool{
		"outbox": true, "_x": true, "Outbox_2": true, strings.Repeat("a", 63): true,
		"": false, strings.Repeat("a", 64): false, "1outbox": false, "outbox; drop table users": false,
		`out"box`: false, "out-box": false, "outbox\x00": false, "schéma": false, "a.b": false,
	} {
		err := backend.CheckIdentifier("postgres", "Table", name)
		if (err == nil) != ok {
			t.Errorf("CheckIdentifier(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && (!errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "postgres: invalid config: Table")) {
			t.Errorf("error %q does not name the component and field", err)
		}
	}
}

// FuzzCheckIdentifier checks the hand-written validator against the documented pattern.
func FuzzCheckIdentifier(f *testing.F) {
	for _, seed := range []string{"outbox", "", "1a", "a;b", `"`, "Ω", strings.Repeat("z", 64), "_"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := backend.CheckIdentifier("c", "f", name)
		if want := identifierRE.MatchString(name); (err == nil) != want {
			t.Fatalf("CheckIdentifier(%q) = %v, pattern says %v", name, err, want)
		}
	})
}
