package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/outbox"
)

// The first byte of every message the WAL mode writes says what follows, so a later encoding can
// be told apart from these by a reader that finds both in the WAL: walFormat is one message,
// walBatch several (one Add of many messages is one WAL record, which the server decodes and
// sends once instead of once per message).
const (
	walFormat = 1
	walBatch  = 2
)

// encodeWAL is the compact encoding a WAL-mode write carries in pg_logical_emit_message:
//
//	format byte (1) | ID (16 bytes) | CreatedAt (varint, Unix ms) | Type | Key | Payload |
//	Result (uvarint length+1, 0 when absent, then the bytes) | header count (uvarint) |
//	header name, value pairs in name order
//
// where every string is a uvarint length and its bytes. It keeps every field a Message is
// written with and needs no escaping, so the payload travels byte for byte. m has been through
// backend.Prepare: its ID is a UUID.
func encodeWAL(m *outbox.Message) ([]byte, error) {
	id, err := uuid.Parse(m.ID)
	if err != nil {
		return nil, fmt.Errorf("message %s: id is not a UUID", m.ID)
	}
	size := 1 + 16 + binary.MaxVarintLen64 + 5*binary.MaxVarintLen64 + len(m.Type) + len(m.Key) + len(m.Payload) + len(m.Result)
	for k, v := range m.Headers {
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	b := make([]byte, 0, size)
	b = append(b, walFormat)
	b = append(b, id[:]...)
	b = binary.AppendVarint(b, m.CreatedAt.UnixMilli())
	b = appendString(b, m.Type)
	b = appendString(b, m.Key)
	b = appendString(b, string(m.Payload))
	if m.Result == nil {
		b = binary.AppendUvarint(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(m.Result))+1)
		b = append(b, m.Result...)
	}
	names := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, k := range names {
		b = appendString(b, k)
		b = appendString(b, m.Headers[k])
	}
	return b, nil
}

// encodeWALBatch encodes several messages as one: walBatch, their count (uvarint), then each
// one's encodeWAL bytes with their length (uvarint) in front.
func encodeWALBatch(msgs []*outbox.Message) ([]byte, error) {
	parts := make([][]byte, len(msgs))
	size := 1 + binary.MaxVarintLen64
	for i, m := range msgs {
		b, err := encodeWAL(m)
		if err != nil {
			return nil, err
		}
		parts[i] = b
		size += binary.MaxVarintLen64 + len(b)
	}
	out := make([]byte, 0, size)
	out = append(out, walBatch)
	out = binary.AppendUvarint(out, uint64(len(parts)))
	for _, b := range parts {
		out = binary.AppendUvarint(out, uint64(len(b)))
		out = append(out, b...)
	}
	return out, nil
}

// decodeWALContent splits a WAL message into the encodings of the messages it carries: itself,
// or a batch's parts.
func decodeWALContent(b []byte) ([][]byte, error) {
	if len(b) == 0 || b[0] != walBatch {
		return [][]byte{b}, nil
	}
	r := walReader{b: b[1:]}
	n := r.uvarint()
	if n > uint64(len(r.b)) { // every part takes at least one byte
		return nil, errWALTruncated
	}
	parts := make([][]byte, 0, n)
	for range n {
		parts = append(parts, r.prefixed())
	}
	if r.err != nil {
		return nil, fmt.Errorf("batch: %w", r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("batch: %d bytes after the last message", len(r.b))
	}
	return parts, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errWALTruncated reports content that ends before its fields do.
var errWALTruncated = errors.New("truncated")

// decodeWAL reverses encodeWAL. It checks the encoding, not the message: the caller runs
// outbox.Message.ValidateStored on the result, as for a row.
func decodeWAL(b []byte) (*outbox.Message, error) {
	if len(b) == 0 {
		return nil, errors.New("empty content")
	}
	if b[0] != walFormat {
		return nil, fmt.Errorf("unknown format %d (this version reads %d)", b[0], walFormat)
	}
	r := walReader{b: b[1:]}
	var m outbox.Message
	id := r.bytes(16)
	if id != nil {
		m.ID = uuid.UUID(id).String()
	}
	ms := r.varint()
	m.Type = string(r.prefixed())
	m.Key = string(r.prefixed())
	if p := r.prefixed(); p != nil {
		m.Payload = slices.Clone(p)
	}
	if n := r.uvarint(); n > 0 {
		m.Result = slices.Clone(r.bytes(n - 1))
	}
	if n := r.uvarint(); n > 0 {
		if n > uint64(len(r.b)) { // every header takes at least two bytes
			return nil, errWALTruncated
		}
		m.Headers = make(map[string]string, n)
		for range n {
			k := string(r.prefixed())
			m.Headers[k] = string(r.prefixed())
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last field", len(r.b))
	}
	m.CreatedAt = time.UnixMilli(ms).UTC()
	return &m, nil
}

// walReader reads encodeWAL's fields, remembering the first error so decodeWAL checks once.
type walReader struct {
	b   []byte
	err error
}

func (r *walReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *walReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errWALTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *walReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errWALTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *walReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail(errWALTruncated)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *walReader) prefixed() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	return r.bytes(n)
}
