package mongo

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// Field names of an outbox document.
const (
	fID          = "_id"
	fType        = "type"
	fKey         = "key"
	fPayload     = "payload"
	fResult      = "result"
	fHeaders     = "headers"
	fCreatedAt   = "created_at"
	fSeq         = "seq"
	fStatus      = "status"
	fAttempts    = "attempts"
	fAvailableAt = "available_at"
	fLeaseOwner  = "lease_owner"
	fLeaseUntil  = "lease_until"
	fClaim       = "claim" // the token of the Claim call holding the lease
	fLastError   = "last_error"
	fDeliveredAt = "delivered_at"
	fDeadAt      = "dead_at"
)

// header is one message header; a list of them survives names that field names cannot carry.
type header struct {
	K string `bson:"k"`
	V string `bson:"v"`
}

// document is how a message is stored. Payload and result are JSON text (see the package doc).
type document struct {
	ID          string    `bson:"_id"`
	Type        string    `bson:"type"`
	Key         string    `bson:"key"`
	Payload     string    `bson:"payload"`
	Result      string    `bson:"result,omitempty"`
	Headers     []header  `bson:"headers,omitempty"`
	CreatedAt   time.Time `bson:"created_at"`
	Seq         int64     `bson:"seq,omitempty"`
	Status      string    `bson:"status"`
	Attempts    int       `bson:"attempts"`
	AvailableAt time.Time `bson:"available_at"`
}

// newDocument maps a prepared message (ID and CreatedAt set) to a new pending document, due at
// due (the server's time when it was written).
func newDocument(m *outbox.Message, seq int64, due time.Time) document {
	d := document{
		ID:          m.ID,
		Type:        m.Type,
		Key:         m.Key,
		Payload:     string(m.Payload),
		Result:      string(m.Result),
		CreatedAt:   m.CreatedAt,
		Seq:         seq,
		Status:      string(outbox.StatusPending),
		Attempts:    m.Attempts,
		AvailableAt: due,
	}
	if len(m.Headers) > 0 {
		// Sorted, so equal messages give equal documents.
		names := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			names = append(names, k)
		}
		slices.Sort(names)
		d.Headers = make([]header, len(names))
		for i, k := range names {
			d.Headers[i] = header{K: k, V: m.Headers[k]}
		}
	}
	return d
}

// storedMessage is a decoded document with the fields the inspector reports.
type storedMessage struct {
	outbox.Message
	Status    outbox.Status
	LastError string
	DeadAt    time.Time
}

// errCorrupt marks a document that cannot be turned back into a message.
var errCorrupt = errors.New("corrupt document")

// decodeDocument maps a stored document back to a message, checking each field, so that a
// document written by something else (or damaged) is reported with the field at fault instead
// of being published wrong. Its errors wrap errCorrupt.
func decodeDocument(raw bson.Raw) (*storedMessage, error) {
	corrupt := func(field, problem string) error {
		return fmt.Errorf("%w: %s %s", errCorrupt, field, problem)
	}
	if err := raw.Validate(); err != nil {
		return nil, corrupt("document", "is not valid BSON: "+err.Error())
	}
	str := func(field string, required bool) (string, error) {
		v, err := raw.LookupErr(field)
		if err != nil || v.Type == bson.TypeNull {
			if required {
				return "", corrupt(field, "is missing")
			}
			return "", nil
		}
		s, ok := v.StringValueOK()
		if !ok {
			return "", corrupt(field, "is a "+v.Type.String()+", not a string")
		}
		return s, nil
	}
	date := func(field string, required bool) (time.Time, error) {
		v, err := raw.LookupErr(field)
		if err != nil || v.Type == bson.TypeNull {
			if required {
				return time.Time{}, corrupt(field, "is missing")
			}
			return time.Time{}, nil
		}
		ms, ok := v.DateTimeOK()
		if !ok {
			return time.Time{}, corrupt(field, "is a "+v.Type.String()+", not a date")
		}
		return time.UnixMilli(ms).UTC(), nil
	}

	var sm storedMessage
	var err error
	if sm.ID, err = str(fID, true); err != nil {
		return nil, err
	}
	if sm.Type, err = str(fType, true); err != nil {
		return nil, err
	}
	if sm.Key, err = str(fKey, false); err != nil {
		return nil, err
	}
	payload, err := str(fPayload, true)
	if err != nil {
		return nil, err
	}
	result, err := str(fResult, false)
	if err != nil {
		return nil, err
	}
	sm.Payload = json.RawMessage(payload)
	if result != "" {
		sm.Result = json.RawMessage(result)
	}
	if sm.CreatedAt, err = date(fCreatedAt, true); err != nil {
		return nil, err
	}
	status, err := str(fStatus, true)
	if err != nil {
		return nil, err
	}
	switch sm.Status = outbox.Status(status); sm.Status {
	case outbox.StatusPending, outbox.StatusDelivered, outbox.StatusDead:
	default:
		return nil, corrupt(fStatus, fmt.Sprintf("%q is not pending, delivered or dead", status))
	}
	if v, err := raw.LookupErr(fAttempts); err == nil {
		n, ok := v.AsInt64OK()
		if !ok || n < 0 {
			return nil, corrupt(fAttempts, "is not a non-negative integer")
		}
		sm.Attempts = int(n)
	}
	if sm.LastError, err = str(fLastError, false); err != nil {
		return nil, err
	}
	if sm.DeadAt, err = date(fDeadAt, false); err != nil {
		return nil, err
	}
	if v, err := raw.LookupErr(fHeaders); err == nil && v.Type != bson.TypeNull {
		arr, ok := v.ArrayOK()
		if !ok {
			return nil, corrupt(fHeaders, "is a "+v.Type.String()+", not an array")
		}
		values, err := arr.Values()
		if err != nil {
			return nil, corrupt(fHeaders, "is not a valid array: "+err.Error())
		}
		if len(values) > 0 {
			sm.Headers = make(map[string]string, len(values))
		}
		for i, hv := range values {
			doc, ok := hv.DocumentOK()
			if !ok {
				return nil, corrupt(fmt.Sprintf("%s[%d]", fHeaders, i), "is not a {k, v} document")
			}
			k, kok := doc.Lookup("k").StringValueOK()
			v, vok := doc.Lookup("v").StringValueOK()
			if !kok || !vok {
				return nil, corrupt(fmt.Sprintf("%s[%d]", fHeaders, i), "does not hold string k and v")
			}
			sm.Headers[k] = v
		}
	}
	// the root package's rule for stored messages: what Add would have accepted, bar the size limit.
	if err := backend.ValidateStored(&sm.Message); err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return &sm, nil
}
