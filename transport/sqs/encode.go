package sqs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// The message attributes the transport adds to the message's Headers.
const (
	// AttributeType carries the message Type, so consumers and SNS-style filters can route on
	// it without parsing the body. Always sent.
	AttributeType = "outbox.type"
	// AttributeKey carries the message Key. Sent when the Key is not empty.
	AttributeKey = "outbox.key"
	// AttributeID carries the message ID. Sent only with RawPayload, whose body has no ID, so
	// consumers can still deduplicate.
	AttributeID = "outbox.id"
	// AttributeHeaders carries all of a message's headers as one JSON object, instead of one
	// attribute each, when they cannot travel one to one: more than SQS's ten attributes, a name
	// SQS does not accept as an attribute name, a reserved name, or a value with a character
	// SQS refuses. So every message a store accepts can be published.
	AttributeHeaders = "outbox.headers"
)

// attributeType is the SQS data type of every attribute this transport sends.
const attributeType = "String"

// entry is one message made ready for SendMessageBatch.
type entry struct {
	index int // position in the Publish call's slice; also the batch entry Id
	body  string
	attrs map[string]types.MessageAttributeValue
	size  int    // as SQS counts it: body plus each attribute's name, type and value
	group string // FIFO MessageGroupId; "" on standard queues
	// ordered is the group whose order this message must keep: its FIFO group when it has a
	// Key, "" otherwise (messages without a Key promise no order, so they never wait).
	ordered string
}

// encode turns m into an entry for q. Its errors are permanent: they concern the message
// itself, and sending it again would fail the same way.
func (t *Transport) encode(index int, m *outbox.Message, q queue, buf []byte) (entry, []byte, error) {
	e := entry{index: index}
	fail := func(format string, args ...any) (entry, []byte, error) {
		return e, buf, outbox.Permanent(fmt.Errorf("sqs: message %s: "+format, append([]any{m.ID}, args...)...))
	}

	if t.cfg.RawPayload {
		e.body = string(m.Payload)
	} else {
		var err error
		buf, err = backend.EncodeEnvelope(buf[:0], m)
		if err != nil {
			return e, buf, err // already permanent, and names the message
		}
		e.body = string(buf)
	}
	if e.body == "" {
		return fail("body is empty")
	}
	if i := invalidText(e.body); i >= 0 {
		return fail("body has a character SQS does not accept at byte %d", i)
	}

	n := 1 // the attributes the transport adds: type, key, ID
	if m.Key != "" {
		n++
	}
	if t.cfg.RawPayload {
		n++
	}
	e.attrs = make(map[string]types.MessageAttributeValue, n+len(m.Headers))
	add := func(name, value string) {
		v := value
		e.attrs[name] = types.MessageAttributeValue{DataType: &attributeTypeValue, StringValue: &v}
		e.size += len(name) + len(attributeType) + len(value)
	}
	if packHeaders(m, n) {
		packed, err := json.Marshal(m.Headers)
		if err != nil {
			return fail("headers cannot be encoded: %v", err)
		}
		add(AttributeHeaders, string(packed))
	} else {
		for name, value := range m.Headers {
			if value != "" { // SQS rejects empty attribute values; an empty header carries nothing
				add(name, value)
			}
		}
	}
	add(AttributeType, m.Type)
	if m.Key != "" {
		add(AttributeKey, m.Key)
	}
	if t.cfg.RawPayload {
		add(AttributeID, m.ID)
	}

	e.size += len(e.body)
	if e.size > t.cfg.MaxMessageBytes {
		return fail("%d bytes (body and attributes) exceed MaxMessageBytes (%d)", e.size, t.cfg.MaxMessageBytes)
	}
	if q.fifo {
		e.group = fifoGroup(m.Key, t.cfg.DefaultGroupID)
		if m.Key != "" {
			e.ordered = e.group
		}
	}
	return e, buf, nil
}

var attributeTypeValue = attributeType

// packHeaders reports whether m's headers must travel as one AttributeHeaders attribute: they
// would not fit in SQS's attribute limit beside the own attributes the transport adds, or one of
// them cannot be an attribute of its own.
func packHeaders(m *outbox.Message, own int) bool {
	n := 0
	for name, value := range m.Headers {
		if value == "" {
			continue
		}
		n++
		if checkAttributeName(name) != nil || invalidText(value) >= 0 ||
			name == AttributeType || name == AttributeKey || name == AttributeID || name == AttributeHeaders {
			return true
		}
	}
	return n+own > MaxAttributes
}

// fifoGroup maps a Key to a MessageGroupId. A key SQS would refuse as a group ID (one with
// spaces or non-ASCII characters) becomes a digest of the key instead of a dead letter: every
// message of the key still lands in one group and keeps its order, and the key itself travels
// in the outbox.key attribute.
func fifoGroup(key, def string) string {
	if key == "" {
		return def
	}
	if groupID.MatchString(key) {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "k-" + hex.EncodeToString(sum[:])
}

// attributeName is what SQS accepts as a message attribute name.
var attributeName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

func checkAttributeName(name string) error {
	lower := strings.ToLower(name)
	switch {
	case !attributeName.MatchString(name):
		return fmt.Errorf("names allow only 1 to 256 of A-Z a-z 0-9 . _ -")
	case strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon."):
		return fmt.Errorf("names starting with AWS. or Amazon. are reserved by SQS")
	case strings.HasPrefix(name, ".") || strings.HasSuffix(name, "."):
		return fmt.Errorf("names cannot start or end with a period")
	case strings.Contains(name, ".."):
		return fmt.Errorf("names cannot contain two periods in a row")
	}
	return nil
}

// invalidText returns the byte offset of the first character SQS refuses in a body or
// attribute value, or -1. SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
// #x10000-#x10FFFF, in valid UTF-8.
func invalidText(s string) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return i
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || r == 0xFFFE || r == 0xFFFF {
			return i
		}
		i += n
	}
	return -1
}
