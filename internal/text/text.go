// Package text holds the rule that makes error text storable, shared by the relay (the root
// package) and the stores (through package backend).
package text

import (
	"strings"
	"unicode/utf8"
)

// MaxError bounds the error text a store keeps for a failed message, in bytes.
const MaxError = 2048

// Storable makes s storable in any store: valid UTF-8 (invalid bytes become U+FFFD), no NUL
// bytes (PostgreSQL text cannot hold them), and at most MaxError bytes, cut on a rune boundary.
func Storable(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 && len(s) <= MaxError {
		return s
	}
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= MaxError {
		return s
	}
	cut := MaxError
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
