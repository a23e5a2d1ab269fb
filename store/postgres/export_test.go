package postgres

// EncodeWAL is encodeWAL for the external tests, which forge WAL messages.
var EncodeWAL = encodeWAL

// WALBufferPeak is the most the WAL reader held at once, streamed or pending in a transaction
// not yet committed: messages and bytes.
func WALBufferPeak(s *Store) (int, int64) {
	s.wal.buf.mu.Lock()
	defer s.wal.buf.mu.Unlock()
	return s.wal.buf.peak, s.wal.buf.peakBytes
}
