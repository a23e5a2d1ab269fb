package outbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	memstore "github.com/txoutbox/outbox/store/memory"
	"github.com/txoutbox/outbox/transport/memory"
)

// schemaStore is a memory store whose CheckSchema answers check.
type schemaStore struct {
	*memstore.Store
	check func(ctx context.Context) error
}

func (s schemaStore) CheckSchema(ctx context.Context) error { return s.check(ctx) }

func TestStartFailsOnAMissingTable(t *testing.T) {
	missing := &outbox.SchemaError{Store: "test", Table: "outbox", Problem: outbox.SchemaMissing}
	for _, tc := range []struct {
		name    string
		check   func(ctx context.Context) error
		wantErr error
	}{
		{"missing table", func(context.Context) error { return missing }, outbox.ErrSchema},
		{"wrapped", func(context.Context) error { return errors.Join(errors.New("check"), missing) }, outbox.ErrSchema},
		// A store that is down at start is an outage: the relay starts and waits it out.
		{"store down", func(context.Context) error { return errors.New("connection refused") }, nil},
		{"store slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, nil},
		{"all well", func(context.Context) error { return nil }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := outbox.NewRelay(schemaStore{memstore.New(), tc.check}, memory.New(), outbox.Config{})
			if err != nil {
				t.Fatal(err)
			}
			begin := time.Now()
			err = r.Start(context.Background())
			if took := time.Since(begin); took > 3*time.Second {
				t.Errorf("Start took %v", took)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Start: %v, want a running relay", err)
				}
				stopRelay(t, r)
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Start: %v, want %v", err, tc.wantErr)
			}
			if err := r.Start(context.Background()); !errors.Is(err, tc.wantErr) {
				t.Fatalf("second Start: %v, want the same schema error (nothing left running)", err)
			}
		})
	}
}
