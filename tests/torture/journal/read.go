package journal

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// InDoubt reads the journals of every relay process of a run and returns the messages whose
// publish may have reached the broker without an acknowledgement that counted: claimed and then
// neither acknowledged within lease of the claim (the process was killed, the ack was abandoned,
// or it came so late that another relay may have claimed the message again) nor failed in a way
// that certainly never sent it. These, and only these, may be delivered more than once.
//
// A journal's last line may be cut short by a SIGKILL in the middle of a write; such a line
// names IDs whose claim or settlement did not fully happen as far as the journal knows, and is
// skipped, which only leaves its claims unsettled (in doubt), never the other way round.
func InDoubt(paths []string, lease time.Duration) (map[string]bool, error) {
	doubt := map[string]bool{}
	for _, path := range paths {
		if err := readOne(path, lease, doubt); err != nil {
			return nil, err
		}
	}
	return doubt, nil
}

func readOne(path string, lease time.Duration, doubt map[string]bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	claimed := map[string]int64{} // held by this process: ID -> unix ms before its claim
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for line := 1; sc.Scan(); line++ {
		op, at, items, ok := parse(sc.Text())
		if !ok {
			continue // a line cut by SIGKILL
		}
		switch op {
		case 'C':
			for _, id := range items {
				claimed[id] = at
			}
		case 'A':
			for _, id := range items {
				if c, held := claimed[id]; held && time.Duration(at-c)*time.Millisecond >= lease {
					doubt[id] = true // acked after its lease: another relay may have it too
				}
				delete(claimed, id)
			}
		case 'N':
			for _, item := range items {
				id, mark, _ := strings.Cut(item, ":")
				if mark != "u" {
					doubt[id] = true
				}
				delete(claimed, id)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("journal: %s: %w", path, err)
	}
	for id := range claimed {
		doubt[id] = true
	}
	return nil
}

// parse splits one journal line; ok is false for a malformed (cut) line.
func parse(s string) (op byte, at int64, items []string, ok bool) {
	fields := strings.SplitN(s, " ", 3)
	if len(fields) != 3 || len(fields[0]) != 1 || !strings.Contains("CAN", fields[0]) {
		return 0, 0, nil, false
	}
	at, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || fields[2] == "" {
		return 0, 0, nil, false
	}
	items = strings.Split(fields[2], ",")
	for _, it := range items {
		id, _, _ := strings.Cut(it, ":")
		if len(id) != 36 {
			return 0, 0, nil, false
		}
	}
	return fields[0][0], at, items, true
}
