package outbox_test

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/txoutbox/outbox"
	"go.uber.org/zap"
)

var errPermanent = outbox.Permanent(errors.New("rejected by the broker"))

func corecfg(log *zap.Logger) outbox.Config { return outbox.Config{Logger: log} }

// countingStore counts claims.
type countingStore struct {
	outbox.Store
	claims atomic.Int64
}

func (s *countingStore) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	s.claims.Add(1)
	return s.Store.Claim(ctx, req)
}
