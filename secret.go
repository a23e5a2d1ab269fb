package outbox

import (
	"encoding/json"
	"fmt"
)

// Secret is a string that never shows itself: a password, a token, a key. A Config field of
// this type prints as "xxxxx" under every fmt verb (%v %+v %#v %s %q %x), in JSON and in
// errors, so a Config never re-lists its fields in a printer, and a field added tomorrow cannot
// leak through a String method that forgot it. An empty Secret prints as "" (unset is no secret).
//
// One gap is fmt's, not the type's: printing a pointer to a struct inside another value with a
// verb that is not %v (say %s of a struct holding a *Config), fmt turns off every String and
// Format method below it and prints the fields raw. A Config that can be held by pointer closes
// it with a one-line Format that prints every verb as %v, without listing its fields.
//
// Assign it from a string with a conversion: outbox.Secret(os.Getenv("AWS_SECRET_ACCESS_KEY")).
// Reveal returns the value for the one place that needs it (the driver).
type Secret string

// redacted stands in for a secret wherever one is shown.
const redacted = "xxxxx"

// Reveal returns the secret's value. Call it only to hand the value to a driver.
func (s Secret) Reveal() string { return string(s) }

// String returns "xxxxx", or "" for an empty Secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString is String quoted, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("%q", s.String()) }

// Format prints String under every verb, so %x or %q cannot bypass it.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", s.String())
	case 'v':
		if f.Flag('#') {
			fmt.Fprint(f, s.GoString())
			return
		}
		fmt.Fprint(f, s.String())
	default:
		fmt.Fprint(f, s.String())
	}
}

// MarshalJSON encodes String.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText encodes String, for encoders that use encoding.TextMarshaler (YAML, TOML, slog).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
