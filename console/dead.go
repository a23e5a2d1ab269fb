package console

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/txoutbox/outbox"
)

// filter selects dead letters: the store's filter (IDs, type, key) plus a substring of the
// last error, which the console applies itself since outbox.DeadFilter has no such field.
type filter struct {
	IDs   []string `json:"ids,omitempty"`
	Type  string   `json:"type,omitempty"`
	Key   string   `json:"key,omitempty"`
	Error string   `json:"error,omitempty"`
}

// errBadInput is the category of everything answered with 400 Bad Request.
var errBadInput = errors.New("bad input")

func badInput(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadInput, fmt.Sprintf(format, args...))
}

// filterFromQuery reads a filter from a query string or a form: type, key, error, id.
func filterFromQuery(v url.Values) (filter, error) {
	f := filter{Type: v.Get("type"), Key: v.Get("key"), Error: v.Get("error")}
	for _, id := range v["id"] {
		if id != "" {
			f.IDs = append(f.IDs, id)
		}
	}
	return f, f.check()
}

// check bounds the filter: its text at most MaxFilterBytes, at most MaxFilterIDs IDs, each a UUID.
func (f filter) check() error {
	if n := len(f.Type) + len(f.Key) + len(f.Error); n > MaxFilterBytes {
		return badInput("the filter is %d bytes of text, more than the limit of %d", n, MaxFilterBytes)
	}
	if len(f.IDs) > MaxFilterIDs {
		return badInput("the filter lists %d IDs, more than the limit of %d", len(f.IDs), MaxFilterIDs)
	}
	for _, id := range f.IDs {
		if _, err := uuid.Parse(id); err != nil {
			return badInput("%q is not a message ID (a UUID)", truncate(id, 40))
		}
	}
	return nil
}

func (f filter) empty() bool {
	return len(f.IDs) == 0 && f.Type == "" && f.Key == "" && f.Error == ""
}

// query is the filter as a query string, for links.
func (f filter) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"type": f.Type, "key": f.Key, "error": f.Error} {
		if s != "" {
			v.Set(k, s)
		}
	}
	for _, id := range f.IDs {
		v.Add("id", id)
	}
	return v
}

func (f filter) store(ids []string, limit int) outbox.DeadFilter {
	return outbox.DeadFilter{IDs: ids, Type: f.Type, Key: f.Key, Limit: limit}
}

func (f filter) match(d *outbox.DeadLetter) bool {
	return f.Error == "" || strings.Contains(d.LastError, f.Error)
}

// find returns up to limit matching dead letters, oldest first, and whether more match. With an
// error substring it scans at most scan of the store's matches.
func find(ctx context.Context, insp outbox.Inspector, f filter, limit, scan int) ([]outbox.DeadLetter, bool, error) {
	if f.Error == "" {
		found, err := insp.ListDead(ctx, f.store(f.IDs, limit+1))
		if err != nil {
			return nil, false, err
		}
		if len(found) > limit {
			return found[:limit], true, nil
		}
		return found, false, nil
	}
	raw, err := insp.ListDead(ctx, f.store(f.IDs, scan+1))
	if err != nil {
		return nil, false, err
	}
	more := len(raw) > scan
	var found []outbox.DeadLetter
	for i := range raw[:min(len(raw), scan)] {
		if f.match(&raw[i]) {
			found = append(found, raw[i])
		}
	}
	if len(found) > limit {
		return found[:limit], true, nil
	}
	return found, more, nil
}

// selection is what a bulk action acts on: the IDs that matched when it was counted, and a
// digest of them that the confirm step carries, so that a confirm is refused as stale when the
// set changed even if its size did not.
type selection struct {
	IDs    []string
	Digest string
}

// errTooMany refuses a bulk action over more than Config.MaxBulk dead letters.
type errTooMany struct{ max int }

func (e errTooMany) Error() string {
	return fmt.Sprintf("more than %d dead letters match: narrow the filter, or use the CLI (outbox dead requeue|purge)", e.max)
}

// selectDead resolves f to the IDs it matches now.
func selectDead(ctx context.Context, insp outbox.Inspector, f filter, maxBulk int) (selection, error) {
	found, more, err := find(ctx, insp, f, maxBulk, maxBulk)
	if err != nil {
		return selection{}, err
	}
	if more {
		return selection{}, errTooMany{maxBulk}
	}
	ids := make([]string, len(found))
	for i, d := range found {
		ids[i] = d.ID
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(strings.Join(sorted, ",")))
	return selection{IDs: ids, Digest: hex.EncodeToString(sum[:12])}, nil
}

// op is a bulk action.
type op string

const (
	opRequeue op = "requeue"
	opPurge   op = "purge"
)

func parseOp(s string) (op, bool) {
	switch op(s) {
	case opRequeue, opPurge:
		return op(s), true
	}
	return "", false
}

// past is the op's past tense, for messages.
func (o op) past() string {
	if o == opRequeue {
		return "requeued"
	}
	return "purged"
}

// apply runs o on the selected IDs (still restricted by f's type and key), in chunks the
// stores take, and returns how many it changed.
func apply(ctx context.Context, insp outbox.Inspector, o op, f filter, sel selection) (int, error) {
	total := 0
	for chunk := range slices.Chunk(sel.IDs, 1000) {
		var n int
		var err error
		if o == opRequeue {
			n, err = insp.Requeue(ctx, f.store(chunk, 0))
		} else {
			n, err = insp.Purge(ctx, f.store(chunk, 0))
		}
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
