package nats

import (
	"net/url"
	"strings"

	"github.com/txoutbox/outbox"
)

// Secrets are kept out of every text the package makes. URLs are redacted here rather than by
// backend.URLRedactor because NATS puts a token where other URLs put the user name
// (nats://token@host): the whole user information is secret.

// secrets returns every secret the config holds, so errors can be scrubbed of them.
func (c Connection) secrets() []string {
	var s []string
	for _, v := range []outbox.Secret{c.Password, c.Token, c.NKeySeed, c.Credentials} {
		if v != "" {
			s = append(s, v.Reveal())
		}
	}
	for _, u := range strings.Split(c.URL.Reveal(), ",") {
		if u = strings.TrimSpace(u); !strings.Contains(u, "://") {
			u = "nats://" + u // nats.go accepts host:port
		}
		s = append(s, secretsOf(u)...) // whatever precedes the @, even if the URL is malformed
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			if p, ok := pu.User.Password(); ok && p != "" {
				s = append(s, p)
			}
			if n := pu.User.Username(); n != "" {
				s = append(s, n) // a lone user name in a URL is a token
			}
		}
	}
	return s
}

// secretsOf returns the user information of a URL (what precedes its last @), found by hand
// so that a URL too malformed to parse is covered as well.
func secretsOf(raw string) []string {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		return []string{rest[:i]}
	}
	return nil
}

// redactURLs replaces the user information of each URL of a server list with "redacted".
func redactURLs(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ",")
	for i, raw := range parts {
		raw = strings.TrimSpace(raw)
		if u, err := url.Parse(raw); err == nil && strings.Contains(raw, "://") {
			if u.User != nil {
				u.User = url.User("redacted")
			}
			u.RawQuery = "" // query values are not ours to print
			parts[i] = u.String()
			continue
		}
		if strings.Contains(raw, "@") {
			parts[i] = "redacted@" + raw[strings.LastIndex(raw, "@")+1:]
			continue
		}
		parts[i] = raw
	}
	return strings.Join(parts, ",")
}

// redactErr returns err's text with every secret replaced. The result does not unwrap to err:
// the cause's own text would print the secret again. Classify an error before redacting it.
func redactErr(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "[redacted]")
		}
	}
	if clean == msg {
		return err
	}
	return &redacted{msg: clean}
}

// redacted is an error whose text had secrets removed.
type redacted struct{ msg string }

func (e *redacted) Error() string { return e.msg }
