package outbox_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/txoutbox/outbox"
)

func TestPermanent(t *testing.T) {
	base := errors.New("queue does not exist")
	p := outbox.Permanent(base)
	if !outbox.IsPermanent(p) || !errors.Is(p, base) || p.Error() != base.Error() {
		t.Fatalf("Permanent(%v) = %v", base, p)
	}
	if !outbox.IsPermanent(fmt.Errorf("sqs: %w", p)) {
		t.Fatal("wrapping lost the permanent mark")
	}
	if outbox.IsPermanent(base) || outbox.Permanent(nil) != nil {
		t.Fatal("plain errors are not permanent; Permanent(nil) is nil")
	}
}

func TestBatchError(t *testing.T) {
	be := outbox.NewBatchError()
	if be.ErrOrNil() != nil {
		t.Fatal("empty batch error is not nil")
	}
	transient := errors.New("throttled")
	be.Add("a", transient)
	be.Add("b", outbox.Permanent(errors.New("too big")))
	err := be.ErrOrNil()
	if !errors.Is(err, transient) || outbox.IsPermanent(err) {
		t.Fatalf("mixed batch error: is transient %v, permanent %v", errors.Is(err, transient), outbox.IsPermanent(err))
	}
	if !strings.Contains(err.Error(), "2 message(s) failed") || !strings.Contains(err.Error(), "a: throttled") {
		t.Fatalf("message %q", err)
	}
	all := outbox.NewBatchError()
	all.Add("b", outbox.Permanent(errors.New("too big")))
	if !outbox.IsPermanent(all) {
		t.Fatal("a batch error whose every failure is permanent is permanent")
	}
	pe := &outbox.PublishError{Transport: "sqs", Type: "T", Err: transient}
	if !errors.Is(pe, transient) || pe.Error() != "sqs: publish T: throttled" {
		t.Fatalf("publish error %q", pe)
	}
}

func TestSchemaErrorSaysWhatToDo(t *testing.T) {
	missing := &outbox.SchemaError{Store: "postgres", Table: `"public"."outbox"`, Problem: outbox.SchemaMissing}
	foreign := &outbox.SchemaError{Store: "sqlite", Table: "events", Problem: "is not an outbox table (no column seq)"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{missing, "postgres: table \"public\".\"outbox\" does not exist: create it with `outbox migrate`"},
		{foreign, "sqlite: table events is not an outbox table (no column seq): it is another table of that name"},
	} {
		if !errors.Is(tc.err, outbox.ErrSchema) || !strings.HasPrefix(tc.err.Error(), tc.want) {
			t.Errorf("%v: want errors.Is ErrSchema and a message starting %q", tc.err, tc.want)
		}
	}
}
