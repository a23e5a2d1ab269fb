// Package journal records which messages a relay process held and how it let go of them, so
// that the torture tests can tell a legitimate duplicate (a message whose lease was cut by a
// kill, an expired lease or a publish of unknown outcome) from a bug.
//
// A journal is a text file with one line per successful store call the relay made, each with
// the call's start and end (unix ms, one clock for every process of the machine):
//
//	C <start> <end> <id>,<id>,...   claimed; written before anything is published
//	A <start> <end> <id>,...        acknowledged
//	N <start> <end> <id>:<u|a>,...  failure recorded: u = the broker never got the message
//	                                (injected fault, held back, too large), a = it may have
//	                                (timeout, connection lost)
//	S <start> <end> <id>,...        of those, the failures that charged an attempt or were dead
//	                                (the ones the PostgreSQL store's WAL mode writes to its table)
//
// In the PostgreSQL store's WAL mode, where one relay's reader holds the replication slot and
// streams, the relay also journals the slot (at the time given, on its own clock):
//
//	H <t> <t> <slot>                its reader took the slot at t
//	L <t> <t> <slot>                its reader no longer held the slot at t (lost at t or before)
//
// and the process that SIGKILLs a relay appends, once it is dead (MarkKilled):
//
//	K <signalled> <died> -          SIGKILL sent at signalled, death seen at died
//
// Each line is one write(2) on an O_APPEND file, so a SIGKILL leaves every line written before
// it intact (the kernel keeps them even though the process never flushed anything).
package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/txoutbox/outbox"
)

// Store wraps a outbox.Store and journals its Claim, Ack and Nack. The wrapped store's Notifier
// stays reachable through it.
type Store struct {
	next outbox.Store
	mu   sync.Mutex
	f    *os.File
}

// Wrap opens (appending to) the journal at path and wraps next with it.
func Wrap(next outbox.Store, path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Store{next: next, f: f}, nil
}

// Close closes the journal file, not the wrapped store.
func (s *Store) Close() error { return s.f.Close() }

func (s *Store) write(op byte, start, end time.Time, items []string) error {
	var b strings.Builder
	b.WriteByte(op)
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(start.UnixMilli(), 10))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(end.UnixMilli(), 10))
	b.WriteByte(' ')
	b.WriteString(strings.Join(items, ","))
	b.WriteByte('\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.f.WriteString(b.String()); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// releasing journals that an ack or nack of ids is about to run. A process killed after the
// store committed it but before its own 'A' or 'N' line was written leaves only this line: the
// leases may have ended from here on, so no later claim by another relay counts as an overlap.
func (s *Store) releasing(start time.Time, ids []string) error {
	return s.write('R', start, start, ids)
}

// Claim implements outbox.Store.
func (s *Store) Claim(ctx context.Context, req outbox.ClaimRequest) ([]*outbox.Message, error) {
	start := time.Now()
	msgs, err := s.next.Claim(ctx, req)
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if err := s.write('C', start, time.Now(), ids); err != nil {
		// Not publishing what could not be journaled keeps the journal a complete record; the
		// leases run out and another claim picks the messages up.
		return nil, err
	}
	return msgs, nil
}

// Ack implements outbox.Store.
func (s *Store) Ack(ctx context.Context, token string, ids []string) (int, error) {
	start := time.Now()
	if err := s.releasing(start, ids); err != nil {
		return 0, err
	}
	n, err := s.next.Ack(ctx, token, ids)
	if err != nil {
		return n, err
	}
	return n, s.write('A', start, time.Now(), ids)
}

// Nack implements outbox.Store.
func (s *Store) Nack(ctx context.Context, token string, failures []outbox.Failure) (int, error) {
	start := time.Now()
	ids := make([]string, len(failures))
	for i, f := range failures {
		ids[i] = f.ID
	}
	if err := s.releasing(start, ids); err != nil {
		return 0, err
	}
	n, err := s.next.Nack(ctx, token, failures)
	if err != nil {
		return n, err
	}
	items := make([]string, len(failures))
	var charged []string
	for i, f := range failures {
		items[i] = f.ID + ":" + sentMark(f.Error)
		if !f.Release || f.Dead {
			charged = append(charged, f.ID)
		}
	}
	end := time.Now()
	if err := s.write('N', start, end, items); err != nil || len(charged) == 0 {
		return n, err
	}
	return n, s.write('S', start, end, charged)
}

// Slot journals that the relay's reader took the WAL mode's slot (held) at t, or no longer
// held it at t.
func (s *Store) Slot(held bool, t time.Time, slot string) error {
	op := byte('L')
	if held {
		op = 'H'
	}
	return s.write(op, t, t, []string{slot})
}

// MarkKilled appends to the journal at path of a relay process that is dead that a SIGKILL was
// sent to it at signalled and its death seen at died. Until signalled it certainly ran; after
// died it certainly held nothing.
func MarkKilled(path string, signalled, died time.Time) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	// On a line of its own even after a line the kill cut short (an empty line is skipped).
	_, err = fmt.Fprintf(f, "\nK %d %d -\n", signalled.UnixMilli(), died.UnixMilli())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Listen forwards to the wrapped store's Notifier.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	n, ok := s.next.(outbox.Notifier)
	if !ok {
		return nil, errors.New("journal: wrapped store has no notifier")
	}
	return n.Listen(ctx)
}

// sentMark classifies a failure by its text, which is all a Failure keeps: "u" when the
// message certainly did not reach the broker, "a" when it may have.
func sentMark(text string) string {
	for _, unsent := range []string{
		"outboxtest: injected fault",                     // the fault kit fails messages before sending them
		"held back",                                      // SQS FIFO hold-back: not sent so as not to overtake
		"exceed MaxMessageBytes",                         // refused by the SQS transport's size check
		"nats: message not sent",                         // NATS KeepKeyOrder: a Key's later messages after a failure
		"(MaxMessageBytes, or the server's max_payload)", // the NATS transport's size check
		"exceeds MaxMessageBytes",                        // the RabbitMQ transport's size check
	} {
		if strings.Contains(text, unsent) {
			return "u"
		}
	}
	return "a"
}
