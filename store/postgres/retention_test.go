package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/postgres"
)

func settleAll(t *testing.T, s *postgres.Store, n int) {
	t.Helper()
	batch := make([]*outbox.Message, n)
	for i := range batch {
		batch[i] = msg(t, "T", "", i)
	}
	add(t, s, batch...)
	got := claim(t, s, "r", n, false)
	if _, err := s.Ack(context.Background(), "r", ids(got)); err != nil {
		t.Fatal(err)
	}
}

// With KeepDelivered, acknowledged rows stay as delivered and DeleteDelivered removes them in
// bounded batches, only those delivered before the cutoff.
func TestRetentionKeepDelivered(t *testing.T) {
	s, _ := newStore(t, func(c *postgres.Config) { c.KeepDelivered = true })
	ctx := context.Background()
	settleAll(t, s, 25)
	if c, _ := s.Counts(ctx); c.Delivered != 25 {
		t.Fatalf("delivered = %d, want 25 kept", c.Delivered)
	}
	if n, err := s.DeleteDelivered(ctx, time.Hour, 10); err != nil || n != 0 {
		t.Fatalf("DeleteDelivered before the window = %d, %v; want 0", n, err)
	}
	var got []int
	for {
		n, err := s.DeleteDelivered(ctx, -time.Second, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
		if n < 10 {
			break
		}
	}
	if len(got) != 3 || got[0] != 10 || got[1] != 10 || got[2] != 5 {
		t.Fatalf("batches = %v, want [10 10 5]", got)
	}
	if _, err := s.DeleteDelivered(ctx, 0, 0); !errors.Is(err, outbox.ErrInvalidArgument) {
		t.Fatalf("limit 0: %v", err)
	}
}

// By default an ack deletes the row: nothing is kept, and retention has nothing to do.
func TestDeleteOnAck(t *testing.T) {
	s, _ := newStore(t, nil)
	ctx := context.Background()
	settleAll(t, s, 5)
	var rows int
	if err := s.Pool().QueryRow(ctx, "SELECT count(*) FROM "+s.Table()).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows left after ack (%v), want 0", rows, err)
	}
	if c, _ := s.Counts(ctx); c != (outbox.Counts{}) {
		t.Fatalf("counts = %+v", c)
	}
	if n, err := s.DeleteDelivered(ctx, -time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("DeleteDelivered = %d, %v", n, err)
	}
}
