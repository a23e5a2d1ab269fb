package core_test

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/txoutbox/outbox/core"
	"go.uber.org/zap"
)

var errPermanent = core.Permanent(errors.New("rejected by the broker"))

func corecfg(log *zap.Logger) core.Config { return core.Config{Logger: log} }

// countingStore counts claims.
type countingStore struct {
	core.Store
	claims atomic.Int64
}

func (s *countingStore) Claim(ctx context.Context, req core.ClaimRequest) ([]*core.Message, error) {
	s.claims.Add(1)
	return s.Store.Claim(ctx, req)
}
