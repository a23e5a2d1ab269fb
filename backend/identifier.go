package backend

import (
	"fmt"

	"github.com/txoutbox/outbox"
)

// MaxIdentifierLength is the longest schema, table or collection name a store accepts: the
// PostgreSQL limit, which every backend shares so a config moves between them unchanged.
const MaxIdentifierLength = 63

// CheckIdentifier reports whether name can be a schema, table or collection name: it must match
// ^[A-Za-z_][A-Za-z0-9_]{0,62}$. Stores still quote identifiers; this check makes sure quoting
// never has anything to hide. The error names component and field.
func CheckIdentifier(component, field, name string) error {
	bad := func(problem string) error {
		return &outbox.ConfigError{Component: component, Field: field, Problem: problem}
	}
	if name == "" {
		return bad("is empty")
	}
	if len(name) > MaxIdentifierLength {
		return bad(fmt.Sprintf("is %d bytes long; the limit is %d", len(name), MaxIdentifierLength))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		letter := c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return bad(fmt.Sprintf("%q must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$", name))
		}
	}
	return nil
}
