package nats

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/txoutbox/outbox"
)

// router picks each message's subject: Routes by Type, then Route, then the Subject template.
type router struct {
	routes map[string]string
	route  func(*outbox.Message) string
	// The template split at its placeholders: subject = parts[0] + Type + parts[1] + Type ...
	parts []string
	// byType caches the template's valid subject of each Type, so the common case costs a
	// lookup rather than a join and a check. Bounded: past maxCached types it stops growing.
	byType sync.Map // Type -> subject
	cached atomic.Int32
}

// maxCached bounds the template cache: far more Types than a service has.
const maxCached = 4096

func newRouter(c Config) *router {
	return &router{routes: c.Routes, route: c.Route, parts: strings.Split(c.Subject, TypePlaceholder)}
}

// subject returns the subject m goes to. Its errors are permanent: the same message would be
// routed the same way again.
func (r *router) subject(m *outbox.Message) (string, error) {
	if s, ok := r.routes[m.Type]; ok {
		return s, nil // checked by Validate
	}
	if r.route != nil {
		if s := r.route(m); s != "" {
			if err := checkSubject(s); err != nil {
				return "", outbox.Permanent(fmt.Errorf("nats: message %s: Route returned a bad subject: %v", m.ID, err))
			}
			return s, nil
		}
	}
	if len(r.parts) == 1 {
		return r.parts[0], nil // a template without {type}, checked by Validate
	}
	if s, ok := r.byType.Load(m.Type); ok {
		return s.(string), nil
	}
	s := strings.Join(r.parts, m.Type)
	if err := checkSubject(s); err != nil {
		return "", outbox.Permanent(fmt.Errorf("nats: message %s: type %q makes a bad subject from the Subject template: %v", m.ID, m.Type, err))
	}
	if r.cached.Load() < maxCached {
		if _, loaded := r.byType.LoadOrStore(m.Type, s); !loaded {
			r.cached.Add(1)
		}
	}
	return s, nil
}

// checkSubject accepts what a JetStream publish may go to: dot-separated non-empty tokens of
// printable UTF-8 without spaces, and no wildcard token (* or >). The server would reject
// the rest, or worse, deliver it to a subject nobody meant.
func checkSubject(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%q has a space or control character at byte %d", s, i)
		}
	}
	for tok := range strings.SplitSeq(s, ".") {
		switch tok {
		case "":
			return fmt.Errorf("%q has an empty token (a leading, trailing or double dot)", s)
		case "*", ">":
			return fmt.Errorf("%q has the wildcard token %s, which cannot be published to", s, tok)
		}
	}
	return nil
}

// placeholder finds what looks like a template placeholder.
var placeholder = regexp.MustCompile(`\{[A-Za-z_]+\}`)

// checkTemplate accepts a subject template: a subject once {type} is replaced, and no other
// placeholder (a {key} would otherwise be published literally).
func checkTemplate(t string) error {
	for _, p := range placeholder.FindAllString(t, -1) {
		if p != TypePlaceholder {
			return fmt.Errorf("%q has the unknown placeholder %s (only %s is replaced; use Route for anything else)", t, p, TypePlaceholder)
		}
	}
	if err := checkSubject(strings.ReplaceAll(t, TypePlaceholder, "T")); err != nil {
		return err
	}
	return nil
}
