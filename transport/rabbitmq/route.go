package rabbitmq

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/txoutbox/outbox"
)

// Placeholders of the RoutingKey template.
const (
	placeholderType = "{type}"
	placeholderKey  = "{key}"
)

// checkTemplate accepts a routing key template whose only placeholders are {type} and {key}.
func checkTemplate(tmpl string) error {
	rest := tmpl
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		rest = rest[i:]
		switch {
		case strings.HasPrefix(rest, placeholderType):
			rest = rest[len(placeholderType):]
		case strings.HasPrefix(rest, placeholderKey):
			rest = rest[len(placeholderKey):]
		default:
			return fmt.Errorf("%q has an unknown placeholder (only {type} and {key} are replaced)", tmpl)
		}
	}
	if strings.ContainsRune(tmpl, '}') && strings.Count(tmpl, "}") != strings.Count(tmpl, placeholderType)+strings.Count(tmpl, placeholderKey) {
		return fmt.Errorf("%q has a stray }", tmpl)
	}
	if !utf8.ValidString(tmpl) {
		return errors.New("is not valid UTF-8")
	}
	return nil
}

// expand fills the template for m.
func expand(tmpl string, m *outbox.Message) string {
	if !strings.ContainsRune(tmpl, '{') {
		return tmpl
	}
	if tmpl == placeholderType {
		return m.Type
	}
	return strings.NewReplacer(placeholderType, m.Type, placeholderKey, m.Key).Replace(tmpl)
}

// destination returns where m goes. Its errors are permanent: they concern the message's
// routing, and sending it again would fail the same way.
func (t *Transport) destination(m *outbox.Message) (exchange, key string, err error) {
	if t.cfg.Route != nil {
		exchange, key = t.cfg.Route(m)
	} else {
		exchange, key = t.cfg.Exchange, expand(t.cfg.RoutingKey, m)
	}
	switch {
	case len(exchange) > maxShortString:
		return "", "", outbox.Permanent(fmt.Errorf("rabbitmq: message %s: exchange name is %d bytes, above the AMQP limit of %d", m.ID, len(exchange), maxShortString))
	case len(key) > maxShortString:
		return "", "", outbox.Permanent(fmt.Errorf("rabbitmq: message %s: routing key is %d bytes, above the AMQP limit of %d", m.ID, len(key), maxShortString))
	case !utf8.ValidString(exchange) || !utf8.ValidString(key):
		return "", "", outbox.Permanent(fmt.Errorf("rabbitmq: message %s: exchange or routing key is not valid UTF-8", m.ID))
	}
	return exchange, key, nil
}
