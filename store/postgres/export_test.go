package postgres

// EncodeWAL is encodeWAL for the external tests, which forge WAL messages.
var EncodeWAL = encodeWAL
