package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/store/sqlite"
)

// Environment of a claimer child process (this test binary, run again).
const (
	claimerDBEnv    = "OUTBOX_SQLITE_CLAIMER_DB"
	claimerOwnerEnv = "OUTBOX_SQLITE_CLAIMER_OWNER"
)

// Real processes, not stores in one process: three OS processes claim from one file at once,
// meeting only in SQLite's file lock and busy timeout. No message is claimed twice, none is
// missed, and no claim or ack fails with SQLITE_BUSY.
func TestClaimsAcrossProcesses(t *testing.T) {
	if os.Getenv(claimerDBEnv) != "" {
		t.Skip("running as a claimer child")
	}
	path := filepath.Join(t.TempDir(), "shared.db")
	s := open(t, sqlite.Config{Path: path})
	const total = 1500
	written := map[string]bool{}
	for range total / 500 {
		var msgs []*outbox.Message
		for range 500 {
			msgs = append(msgs, msg("T", ""))
		}
		add(t, s, msgs...)
		for _, m := range msgs {
			written[m.ID] = true
		}
	}

	var mu sync.Mutex
	claimedBy := map[string]string{}
	record := func(owner, id string) {
		mu.Lock()
		defer mu.Unlock()
		if prev, dup := claimedBy[id]; dup {
			t.Errorf("message %s claimed by %s and %s", id, prev, owner)
		}
		claimedBy[id] = owner
	}
	var wg sync.WaitGroup
	for i := range 2 {
		owner := fmt.Sprint("child-", i)
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestClaimerProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), claimerDBEnv+"="+path, claimerOwnerEnv+"="+owner)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Error(err)
				return
			}
			if err := cmd.Start(); err != nil {
				t.Error(err)
				return
			}
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if id, ok := strings.CutPrefix(sc.Text(), "claimed "); ok {
					record(owner, id)
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("%s: %v\n%s", owner, err, stderr.String())
			}
		})
	}
	wg.Go(func() {
		if err := claimAll(context.Background(), s, "parent", func(id string) { record("parent", id) }); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	if len(claimedBy) != total {
		t.Fatalf("claimed %d distinct messages, want %d", len(claimedBy), total)
	}
	perOwner := map[string]int{}
	for id, owner := range claimedBy {
		if !written[id] {
			t.Fatalf("claimed unknown message %s", id)
		}
		perOwner[owner]++
	}
	t.Logf("claims per process: %v", perOwner)
}

// TestClaimerProcess is the child side of TestClaimsAcrossProcesses.
func TestClaimerProcess(t *testing.T) {
	path := os.Getenv(claimerDBEnv)
	if path == "" {
		t.Skip("only runs as a child of TestClaimsAcrossProcesses")
	}
	s := open(t, sqlite.Config{Path: path})
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	err := claimAll(context.Background(), s, os.Getenv(claimerOwnerEnv), func(id string) { fmt.Fprintln(w, "claimed", id) })
	if err != nil {
		t.Fatal(err)
	}
}

// claimAll claims and acks in small batches until the outbox stays empty for a while.
func claimAll(ctx context.Context, s *sqlite.Store, owner string, claimed func(id string)) error {
	for empty := 0; empty < 20; {
		msgs, err := s.Claim(ctx, outbox.ClaimRequest{Token: owner, Limit: 25, Lease: time.Minute})
		if err != nil {
			return fmt.Errorf("%s: %w", owner, err)
		}
		if len(msgs) == 0 {
			empty++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		empty = 0
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
			claimed(m.ID)
		}
		if _, err := s.Ack(ctx, owner, ids); err != nil {
			return fmt.Errorf("%s: %w", owner, err)
		}
	}
	return nil
}
