//go:build torture

package torture

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// notHolding checks, in a WAL lane, that a relay whose reader did not hold the slot handed out
// only what was in the outbox table (promise 6): a standby claims from the table, and a holder
// whose replication connection was cut must not go on serving what it had streamed, which the
// new holder streams again and hands out too. It reads the journals' claims (C lines) and the
// holds they record (H and L lines, a K line ending a hold at the kill), and returns how many
// claims fell wholly outside a hold of their process, and the messages of those that were not
// in the table (tabledAt, see recordTabled) when the claim returned.
func notHolding(paths []string, tabledAt map[string]time.Time) (outside int, wrong []string, err error) {
	for _, path := range paths {
		n, w, err := notHoldingIn(path, tabledAt)
		if err != nil {
			return 0, nil, err
		}
		outside += n
		wrong = append(wrong, w...)
	}
	return outside, wrong, nil
}

type claimLine struct {
	start, end int64 // unix ms
	ids        []string
}

func notHoldingIn(path string, tabledAt map[string]time.Time) (outside int, wrong []string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	type mark struct {
		held bool
		at   int64
	}
	var marks []mark
	var claims []claimLine
	killed := int64(math.MaxInt64)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 4)
		if len(fields) != 4 || len(fields[0]) != 1 {
			continue // cut short by a kill
		}
		start, err1 := strconv.ParseInt(fields[1], 10, 64)
		end, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		switch fields[0] {
		case "H", "L":
			marks = append(marks, mark{fields[0] == "H", start})
		case "K":
			killed = start
		case "C":
			claims = append(claims, claimLine{start, end, strings.Split(fields[3], ",")})
		}
	}
	if err := sc.Err(); err != nil {
		return 0, nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	slices.SortStableFunc(marks, func(a, b mark) int { return int(a.at - b.at) })
	type period struct{ from, to int64 }
	var holds []period
	for _, m := range marks {
		open := len(holds) > 0 && holds[len(holds)-1].to == math.MaxInt64
		switch {
		case m.held && open:
			holds[len(holds)-1].to = m.at
			holds = append(holds, period{m.at, math.MaxInt64})
		case m.held:
			holds = append(holds, period{m.at, math.MaxInt64})
		case open:
			holds[len(holds)-1].to = m.at
		}
	}
	if n := len(holds); n > 0 && holds[n-1].to == math.MaxInt64 {
		holds[n-1].to = killed // a clean stop journals no loss: held until it exited
	}
	proc := strings.TrimSuffix(filepath.Base(path), ".journal")
	for _, c := range claims {
		// A claim that overlaps a hold may have served the stream; one that began after a
		// journaled loss (the reader had dropped its buffer by then) or ended before a take
		// could serve only the table.
		if slices.ContainsFunc(holds, func(h period) bool { return c.end >= h.from && c.start <= h.to }) {
			continue
		}
		outside++
		for _, id := range c.ids {
			id, _, _ = strings.Cut(id, ":")
			if at, ok := tabledAt[id]; !ok || at.UnixMilli() > c.end+1 {
				wrong = append(wrong, fmt.Sprintf("%s: claimed by %s at %s while not holding the slot, not in the table then",
					id, proc, time.UnixMilli(c.start).Format("15:04:05.000")))
			}
		}
	}
	return outside, wrong, nil
}

// claimedAfterAck returns the messages that some relay claimed again after a relay's
// acknowledgement of them had returned (an A line's end before the claim's start). In WAL mode
// that is the slot streaming again an event that was published, and so a re-send, whether or
// not the broker shows it: a FIFO queue drops a second send of one message ID within its
// deduplication window.
func claimedAfterAck(paths []string) (map[string]bool, error) {
	acked := map[string]int64{} // message ID -> end of its first acknowledgement
	type claim struct {
		start int64
		ids   []string
	}
	var claims []claim
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			fields := strings.SplitN(sc.Text(), " ", 4)
			if len(fields) != 4 || (fields[0] != "A" && fields[0] != "C") {
				continue
			}
			start, err1 := strconv.ParseInt(fields[1], 10, 64)
			end, err2 := strconv.ParseInt(fields[2], 10, 64)
			if err1 != nil || err2 != nil {
				continue // cut short by a kill
			}
			ids := strings.Split(fields[3], ",")
			if fields[0] == "C" {
				claims = append(claims, claim{start, ids})
				continue
			}
			for _, id := range ids {
				if at, ok := acked[id]; !ok || end < at {
					acked[id] = end
				}
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("journal: %s: %w", path, err)
		}
	}
	again := map[string]bool{}
	for _, c := range claims {
		for _, id := range c.ids {
			if at, ok := acked[id]; ok && c.start > at {
				again[id] = true
			}
		}
	}
	return again, nil
}
