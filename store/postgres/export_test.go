package postgres

import "context"

// EncodeWAL is encodeWAL for the external tests, which forge WAL messages.
var EncodeWAL = encodeWAL

// WALBufferPeak is the most the WAL reader held at once, streamed or pending in a transaction
// not yet committed: messages and bytes.
func WALBufferPeak(s *Store) (int, int64) {
	s.wal.buf.mu.Lock()
	defer s.wal.buf.mu.Unlock()
	return s.wal.buf.peak, s.wal.buf.peakBytes
}

// SetWALQueueHook sets a function run when a claim has looked which keys still have messages
// in the table and before it queues streamed messages behind them.
func SetWALQueueHook(f func()) { walQueueHook = f }

// WALReloadSpilled reads the spilled keys again from the table, as a reconnect does.
func WALReloadSpilled(s *Store) error { return s.wal.loadSpilled(context.Background()) }
