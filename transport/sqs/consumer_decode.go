package sqs

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/backend"
)

// decodeReceived turns a received SQS message back into the message the Transport sent: the
// envelope (or, raw, the payload with the outbox.id and outbox.type attributes), Key from
// outbox.key, every other String attribute as a header.
func decodeReceived(m types.Message, raw bool) (*outbox.Message, error) {
	body := aws.ToString(m.Body)
	var msg *outbox.Message
	if raw {
		msg = &outbox.Message{
			ID:      attr(m.MessageAttributes, AttributeID),
			Type:    attr(m.MessageAttributes, AttributeType),
			Payload: json.RawMessage(body),
		}
		switch {
		case msg.ID == "":
			return nil, errors.New("sqs consumer: raw message without the " + AttributeID + " attribute")
		case msg.Type == "":
			return nil, errors.New("sqs consumer: raw message without the " + AttributeType + " attribute")
		case !json.Valid(msg.Payload):
			return nil, errors.New("sqs consumer: raw message body is not valid JSON")
		}
	} else {
		var err error
		if msg, err = backend.DecodeEnvelope([]byte(body)); err != nil {
			return nil, fmt.Errorf("sqs consumer: %w", err)
		}
	}
	for name, v := range m.MessageAttributes {
		if !strings.HasPrefix(aws.ToString(v.DataType), "String") || v.StringValue == nil {
			continue // binary and number attributes are not headers this project sends
		}
		switch name {
		case AttributeKey:
			msg.Key = *v.StringValue
		case AttributeType, AttributeID:
		case AttributeHeaders:
			var packed map[string]string
			if err := json.Unmarshal([]byte(*v.StringValue), &packed); err != nil {
				return nil, fmt.Errorf("sqs consumer: attribute %s is not a JSON object of strings: %w", AttributeHeaders, err)
			}
			if msg.Headers == nil {
				msg.Headers = make(map[string]string, len(packed))
			}
			maps.Copy(msg.Headers, packed)
		default:
			if msg.Headers == nil {
				msg.Headers = make(map[string]string, len(m.MessageAttributes))
			}
			msg.Headers[name] = *v.StringValue
		}
	}
	return msg, nil
}

func attr(attrs map[string]types.MessageAttributeValue, name string) string {
	return aws.ToString(attrs[name].StringValue)
}
