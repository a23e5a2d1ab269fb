package sqlite_test

import (
	"context"

	"github.com/google/uuid"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

// insertRaw writes a row around the store, as a buggy script or a manual fix might.
func insertRaw(t *testing.T, s *sqlite.Store, id, key, payload string, result, headers any) {
	t.Helper()
	now := time.Now().UnixMilli()
	_, err := s.DB().Exec(`INSERT INTO outbox (id, type, key, payload, result, headers, created_at, available_at)
		VALUES (?, 'T', ?, ?, ?, ?, ?, ?)`, id, key, payload, result, headers, now, now)
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptRowsAreDeadLettered(t *testing.T) {
	ctx := context.Background()
	for _, ordered := range []bool{false, true} {
		name := "Unordered"
		if ordered {
			name = "Ordered"
		}
		t.Run(name, func(t *testing.T) {
			s := open(t, sqlite.Config{})
			good := msg("T", "")
			add(t, s, good)
			badPayload, badResult, badHeaders, badHead := uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()
			insertRaw(t, s, badPayload, "", `{"broken":`, nil, nil)
			insertRaw(t, s, badResult, "", `{}`, "nope", nil)
			insertRaw(t, s, badHeaders, "", `{}`, nil, `{"n":1}`)
			insertRaw(t, s, badHead, "k", `not json`, nil, nil)
			after := msg("T", "k") // same key, after a corrupt head
			add(t, s, after)

			got := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute, Ordered: ordered})
			ids := []string{}
			for _, m := range got {
				ids = append(ids, m.ID)
			}
			want := []string{good.ID}
			if !ordered {
				want = append(want, after.ID)
			}
			if strings.Join(ids, ",") != strings.Join(want, ",") {
				t.Fatalf("claimed %v, want only the sound messages %v", ids, want)
			}

			dead, err := s.ListDead(ctx, outbox.DeadFilter{})
			if err != nil {
				t.Fatal(err)
			}
			reasons := map[string]string{}
			for _, d := range dead {
				reasons[d.ID] = d.LastError
				if d.DiedAt.IsZero() {
					t.Errorf("%s: no time of death", d.ID)
				}
			}
			for id, want := range map[string]string{
				badPayload: "payload not valid JSON",
				badResult:  "result not valid JSON",
				badHeaders: "headers are not a JSON object of strings",
				badHead:    "payload not valid JSON",
			} {
				if !strings.Contains(reasons[id], "sqlite: corrupt message: invalid message: "+want) {
					t.Errorf("%s: last error %q, want %q", id, reasons[id], want)
				}
			}
			// In ordered mode the corrupt head blocks its key until it is purged.
			if ordered {
				if again := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute, Ordered: true}); len(again) != 0 {
					t.Fatalf("claimed %d behind a dead head", len(again))
				}
				if n, err := s.Purge(ctx, outbox.DeadFilter{Key: "k"}); err != nil || n != 1 {
					t.Fatalf("purge = %d, %v", n, err)
				}
				again := claim(t, s, outbox.ClaimRequest{Token: "o", Limit: 10, Lease: time.Minute, Ordered: true})
				if len(again) != 1 || again[0].ID != after.ID {
					t.Fatalf("after purging the head, claimed %v, want %s", again, after.ID)
				}
			}
		})
	}
}
