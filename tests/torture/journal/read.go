package journal

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Analysis is what the journals of every relay process of a run prove.
type Analysis struct {
	// InDoubt holds the messages whose publish may have reached the broker without an
	// acknowledgement that counted: claimed and then neither acknowledged within a lease of
	// the claim (the process was killed, the ack was abandoned, or it came so late that another
	// relay may have claimed the message again) nor failed in a way that certainly never sent
	// it. These, and only these, may be delivered more than once.
	InDoubt map[string]bool
	// Overlaps describes each claim that certainly happened while another process held the
	// message under a valid lease: a broken promise that no two relays hold one message.
	Overlaps []string
	// Claims counts the claim lines read.
	Claims int
}

// hold is one process's lease on one message, as its journal bounds it.
type hold struct {
	proc                 string
	claimStart, claimEnd int64 // unix ms around the claim call
	releaseStart         int64 // start of the ack or nack that ended it; MaxInt64 if none
	releaseBegun         int64 // first 'R' line: an ack or nack that may have ended it; MaxInt64 if none
}

// Analyze reads the journals and returns what they prove for a lease of lease.
//
// A journal's last line may be cut short by a SIGKILL in the middle of a write; such a line
// is skipped, which leaves its claims unsettled (in doubt) and never proves an overlap.
func Analyze(paths []string, lease time.Duration) (Analysis, error) {
	a := Analysis{InDoubt: map[string]bool{}}
	holds := map[string][]hold{}
	for _, path := range paths {
		if err := a.readOne(path, lease.Milliseconds(), holds); err != nil {
			return Analysis{}, err
		}
	}
	a.findOverlaps(holds, lease.Milliseconds())
	return a, nil
}

func (a *Analysis) readOne(path string, lease int64, holds map[string][]hold) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	proc := filepath.Base(path)
	open := map[string]int{} // message ID -> index in holds[id] of this process's current hold
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		op, start, end, items, ok := parse(sc.Text())
		if !ok {
			continue
		}
		switch op {
		case 'C':
			a.Claims++
			for _, id := range items {
				if i, held := open[id]; held { // claimed again without a settlement: the old lease ran out
					holds[id][i].releaseStart = start
					a.InDoubt[id] = true
				}
				open[id] = len(holds[id])
				holds[id] = append(holds[id], hold{proc: proc, claimStart: start, claimEnd: end, releaseStart: math.MaxInt64, releaseBegun: math.MaxInt64})
			}
		case 'R':
			for _, id := range items {
				if i, held := open[id]; held {
					h := &holds[id][i]
					h.releaseBegun = min(h.releaseBegun, start)
				}
			}
		case 'A', 'N':
			for _, item := range items {
				id, mark, _ := strings.Cut(item, ":")
				i, held := open[id]
				if !held {
					continue
				}
				h := &holds[id][i]
				h.releaseStart = start
				delete(open, id)
				switch {
				case op == 'N' && mark != "u":
					a.InDoubt[id] = true
				case op == 'A' && end-h.claimStart >= lease:
					// The ack may have run after the lease ended, when another relay may have
					// claimed the message: the store ignores such an ack without an error.
					a.InDoubt[id] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("journal: %s: %w", path, err)
	}
	for id := range open {
		a.InDoubt[id] = true
	}
	return nil
}

// findOverlaps reports claims made while another process certainly held the message. Process P
// holds a message from the moment its claim committed (at the latest at claimEnd) until its
// lease ends (at the earliest claimStart+lease) or its ack or nack runs (at the earliest
// releaseStart). A claim by Q certainly ran in that window when it started after P's claimEnd
// and ended before the window closed. Timestamps are whole milliseconds, rounded down, so the
// comparisons leave a millisecond of margin on each side.
func (a *Analysis) findOverlaps(holds map[string][]hold, lease int64) {
	for id, hs := range holds {
		for _, p := range hs {
			closes := min(p.releaseStart, p.releaseBegun, p.claimStart+lease)
			for _, q := range hs {
				if q.proc == p.proc {
					continue
				}
				if q.claimStart > p.claimEnd && q.claimEnd+1 < closes {
					a.Overlaps = append(a.Overlaps, fmt.Sprintf("%s: %s claimed it at %d-%d while %s held it (claimed %d-%d, released from %d)",
						id, q.proc, q.claimStart, q.claimEnd, p.proc, p.claimStart, p.claimEnd, p.releaseStart))
				}
			}
		}
	}
}

// parse splits one journal line; ok is false for a malformed (cut) line.
func parse(s string) (op byte, start, end int64, items []string, ok bool) {
	fields := strings.SplitN(s, " ", 4)
	if len(fields) != 4 || len(fields[0]) != 1 || !strings.Contains("CANR", fields[0]) || fields[3] == "" {
		return 0, 0, 0, nil, false
	}
	start, err1 := strconv.ParseInt(fields[1], 10, 64)
	end, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, 0, nil, false
	}
	items = strings.Split(fields[3], ",")
	for _, it := range items {
		id, _, _ := strings.Cut(it, ":")
		if len(id) != 36 {
			return 0, 0, 0, nil, false
		}
	}
	return fields[0][0], start, end, items, true
}

// FirstAckAfter returns the start of the first acknowledgement, in any of the journals, that
// began at or after t: the first publish a relay saw succeed from then on. ok is false when
// there is none.
func FirstAckAfter(paths []string, t time.Time) (first time.Time, ok bool, err error) {
	from := t.UnixMilli()
	best := int64(math.MaxInt64)
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return time.Time{}, false, fmt.Errorf("journal: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
		for sc.Scan() {
			if op, start, _, _, valid := parse(sc.Text()); valid && op == 'A' && start >= from && start < best {
				best = start
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("journal: %s: %w", path, err)
		}
	}
	if best == math.MaxInt64 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(best), true, nil
}
