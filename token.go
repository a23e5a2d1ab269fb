package outbox

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// tokens makes the relay's claim tokens: its Owner, a random part unique to this Relay value
// (two processes given the same Owner by mistake still never share a token) and a counter.
type tokens struct {
	prefix string
	n      atomic.Uint64
}

func tokenPrefix(owner string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return owner + "/" + hex.EncodeToString(b[:]) + "."
}

func (t *tokens) next() string { return t.prefix + strconv.FormatUint(t.n.Add(1), 36) }
