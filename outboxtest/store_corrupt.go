package outboxtest

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// testCorrupt: a stored message damaged behind the store's back goes dead with a reason at its
// first claim, while the rest flow; in ordered mode it blocks its key (it is the key's dead head)
// and what follows it in the same claim is handed back, not published. Failure text of any shape
// is stored as backend.StorableText makes it.
func (s *storeSuite) testCorrupt(t *testing.T) {
	t.Run("ErrorText", s.testErrorText)
	if s.newStore(t).Corrupt == nil {
		t.Skip("the harness cannot damage a stored message")
	}
	for _, ordered := range []bool{false, true} {
		name := "Unordered"
		if ordered {
			name = "Ordered"
		}
		t.Run(name, func(t *testing.T) {
			h := s.newStore(t)
			key := mustAdd(t, h, NewMessages(3, "T", "k")...)
			free := mustAdd(t, h, NewMessages(2, "T", "")...)
			if err := h.Corrupt(testCtx(t), key[0].ID); err != nil {
				t.Fatalf("corrupt: %v", err)
			}
			got := mustClaim(t, h.Store, outbox.ClaimRequest{Token: owner("a"), Ordered: ordered})
			want := []string{key[1].ID, key[2].ID, free[0].ID, free[1].ID}
			if ordered {
				want = []string{free[0].ID, free[1].ID}
			}
			sameIDs(t, "claim after damaging "+key[0].ID, got, want...)
			if !s.f.Inspector {
				return
			}
			dead, err := inspector(t, h.Store).ListDead(testCtx(t), outbox.DeadFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].ID != key[0].ID || !strings.Contains(dead[0].LastError, "corrupt") || dead[0].DiedAt.IsZero() {
				t.Fatalf("dead letters %+v, want only the damaged message, with its reason", dead)
			}
			if ordered {
				// The rest of the key waits behind its dead head, and comes out once it is purged.
				if again := mustClaim(t, h.Store, ordered2(owner("b"))); len(again) != 0 {
					t.Fatalf("claimed %v behind a dead corrupt head", IDs(again))
				}
				if _, err := inspector(t, h.Store).Purge(testCtx(t), outbox.DeadFilter{IDs: []string{key[0].ID}}); err != nil {
					t.Fatal(err)
				}
				sameIDs(t, "after purging the corrupt head", mustClaim(t, h.Store, ordered2(owner("c"))), key[1].ID, key[2].ID)
			}
		})
	}
}

func ordered2(token string) outbox.ClaimRequest {
	return outbox.ClaimRequest{Token: token, Ordered: true}
}

// testErrorText: a failure's text with invalid UTF-8, NUL bytes and 10 KiB is stored as
// backend.StorableText makes it (stores apply it to what they are given too).
func (s *storeSuite) testErrorText(t *testing.T) {
	if !s.f.Inspector {
		t.Skip("store has no inspector to read the last error back")
	}
	h := s.newStore(t)
	msgs := mustAdd(t, h, NewMessages(1, "T", "")...)
	a := owner("a")
	mustClaim(t, h.Store, outbox.ClaimRequest{Token: a})
	text := "broker said \xff\xfe and \x00 then " + strings.Repeat("é", 5<<10)
	if n := mustNack(t, h.Store, a, outbox.Failure{ID: msgs[0].ID, Error: text, Dead: true}); n != 1 {
		t.Fatalf("nack settled %d, want 1", n)
	}
	dead, err := inspector(t, h.Store).ListDead(testCtx(t), outbox.DeadFilter{IDs: []string{msgs[0].ID}})
	if err != nil || len(dead) != 1 {
		t.Fatalf("list dead = %v, %v", dead, err)
	}
	got := dead[0].LastError
	if want := backend.StorableText(text); got != want {
		t.Fatalf("stored error text (%d bytes, valid UTF-8 %v, NUL %v) is not backend.StorableText of the failure (%d bytes)",
			len(got), utf8.ValidString(got), strings.ContainsRune(got, 0), len(want))
	}
}
