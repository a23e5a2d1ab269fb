//go:build torture

package torture

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// relayAppName is the application_name of the connections of a lane's relay in slot i, by
// which holderSlot finds the relay whose replication connection holds the slot.
func relayAppName(i int) string { return fmt.Sprintf("torture-relay%d", i) }

// withAppName returns the connection string u with application_name set to name.
func withAppName(u, name string) (string, error) {
	parsed, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	q := parsed.Query()
	q.Set("application_name", name)
	parsed.RawQuery = q.Encode()
	return parsed.String(), nil
}

// holderSlot returns the fleet slot whose relay's reader holds the lane's replication slot at
// the moment, or -1 when no relay holds it (a takeover is under way).
func (ln *lane) holderSlot(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var name string
	err := ln.db.admin.QueryRow(ctx, `SELECT a.application_name FROM pg_replication_slots s
		JOIN pg_stat_activity a ON a.pid = s.active_pid WHERE s.slot_name = $1`, ln.db.slot).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	for i := range ln.spec.relays {
		if name == relayAppName(i) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("the slot %s is held by a connection named %q, not a relay of the lane", ln.db.slot, strings.TrimSpace(name))
}

// waitHolder waits up to timeout for a relay other than fleet slot not's to hold the lane's
// slot and returns its fleet slot, or -1 when none took it in time.
func (ln *lane) waitHolder(ctx context.Context, timeout time.Duration, not int) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		i, err := ln.holderSlot(ctx)
		if err == nil && i >= 0 && i != not {
			return i, nil
		}
		if time.Now().After(deadline) || !sleep(ctx, 50*time.Millisecond) {
			return -1, err
		}
	}
}
