package sqs

import (
	"strings"
	"testing"
)

func TestInvalidText(t *testing.T) {
	for s, want := range map[string]int{
		`{"a":"plain"}`:       -1,
		"tab\tnewline\n\rok":  -1,
		"ünïcode ✓ 🎉":         -1,
		"\uFFFD is valid":     -1,
		"nul\x00":             3,
		"bell\x07":            4,
		"bad utf8 \xff":       9,
		"nonchar \uFFFE":      8,
		"nonchar \uFFFF":      8,
		"escape \x1b[0m text": 7,
	} {
		if got := invalidText(s); got != want {
			t.Errorf("invalidText(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestCheckAttributeName(t *testing.T) {
	for name, ok := range map[string]bool{
		"traceparent":            true,
		"content-type":           true,
		"tenant.id":              true,
		"x_y-z.1":                true,
		strings.Repeat("a", 256): true,
		strings.Repeat("a", 257): false,
		"":                       false,
		"has space":              false,
		"colon:name":             false,
		"AWS.trace":              false,
		"amazon.x":               false,
		".leading":               false,
		"trailing.":              false,
		"two..periods":           false,
		"ünïcode":                false,
	} {
		if err := checkAttributeName(name); (err == nil) != ok {
			t.Errorf("checkAttributeName(%q) = %v, want ok=%t", name, err, ok)
		}
	}
}

func TestFIFOGroup(t *testing.T) {
	if g := fifoGroup("", "def"); g != "def" {
		t.Errorf("empty key -> %q, want the default group", g)
	}
	if g := fifoGroup("user-42", "def"); g != "user-42" {
		t.Errorf("valid key -> %q, want the key", g)
	}
	a, b := fifoGroup("user 42", "def"), fifoGroup("user 43", "def")
	if a == b || a != fifoGroup("user 42", "def") || !groupID.MatchString(a) {
		t.Errorf("invalid keys -> %q, %q: want distinct, stable, valid group IDs", a, b)
	}
}

func TestIsFIFO(t *testing.T) {
	for q, want := range map[string]bool{
		"orders.fifo": true,
		"orders":      false,
		"https://sqs.eu-west-1.amazonaws.com/123456789012/orders.fifo": true,
		"https://sqs.eu-west-1.amazonaws.com/123456789012/orders":      false,
		"http://fifo.example/1/orders":                                 false,
	} {
		if got := isFIFO(q); got != want {
			t.Errorf("isFIFO(%q) = %t, want %t", q, got, want)
		}
	}
}
