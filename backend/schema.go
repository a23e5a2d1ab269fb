package backend

import (
	"strings"

	"github.com/txoutbox/outbox"
)

// CheckColumns is a store's CheckSchema verdict on a table whose columns are have: an
// *outbox.SchemaError saying the table does not exist (no columns at all) or naming the columns
// of want it lacks, and nil when it has every one of them.
func CheckColumns(store, table string, have map[string]bool, want []string) error {
	if len(have) == 0 {
		return &outbox.SchemaError{Store: store, Table: table, Problem: outbox.SchemaMissing}
	}
	var missing []string
	for _, c := range want {
		if !have[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return &outbox.SchemaError{Store: store, Table: table,
			Problem: "is not an outbox table (no column " + strings.Join(missing, ", ") + ")"}
	}
	return nil
}
