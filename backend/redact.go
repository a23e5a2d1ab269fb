package backend

import (
	"net/url"
	"strings"
)

// Redacted stands in for a secret wherever a config, a connection string or an error is shown.
const Redacted = "xxxxx"

// minScrubLen is the shortest secret ScrubSecrets replaces inside free text: replacing one or two
// characters everywhere would mangle the text, and no driver quotes a secret that short alone.
const minScrubLen = 3

// A URLRedactor hides the secrets of connection URLs shaped
// scheme://[user[:password]@]host[,host...][/path][?query][#fragment] — PostgreSQL, MongoDB and
// broker URLs alike — for logs, errors and output. It works by allow-list: the password and the
// value of every query parameter not in Harmless are masked, so a parameter a driver adds
// tomorrow (a token, a key password) stays hidden until someone decides it is safe to show.
// Each backend keeps one URLRedactor, used by its Config's String, GoString and MarshalJSON, by
// its error paths and by the outbox command.
type URLRedactor struct {
	// Harmless names the query parameters whose values may be shown, compared without regard
	// to case (MongoDB's option names are case-insensitive). Default none: every value masked.
	Harmless []string
}

// Redact returns raw with its secrets replaced by Redacted, and ok. A string that is not a
// scheme://… URL returns ("", false): the caller decides what to show of it (a PostgreSQL
// key=value string, a file path), since it might be a secret whole.
func (r URLRedactor) Redact(raw string) (string, bool) {
	p, ok := splitURL(raw)
	if !ok {
		return "", false
	}
	var b strings.Builder
	b.WriteString(p.scheme + "://")
	if p.hasUser {
		b.WriteString(p.user)
		if p.hasPassword {
			b.WriteString(":" + Redacted)
		}
		b.WriteString("@")
	}
	b.WriteString(p.hosts)
	if p.hasPath {
		b.WriteString("/" + p.path)
	}
	if p.hasQuery {
		b.WriteString("?" + r.RedactQuery(p.query))
	}
	if p.hasFragment {
		b.WriteString("#" + Redacted)
	}
	return b.String(), true
}

// RedactQuery returns a URL query (a=1&b=2, no leading ?) with the value of every parameter
// not in Harmless replaced by Redacted. Parameters keep their order; a bare word that is not a
// harmless name is masked whole.
func (r URLRedactor) RedactQuery(query string) string {
	parts := strings.Split(query, "&")
	for i, part := range parts {
		key, _, hasValue := strings.Cut(part, "=")
		switch {
		case r.harmless(key):
		case hasValue:
			parts[i] = key + "=" + Redacted
		case part != "":
			parts[i] = Redacted
		}
	}
	return strings.Join(parts, "&")
}

// Secrets returns what Redact hides in raw — the password, the values of parameters not in
// Harmless, the fragment — each as written and URL-unescaped, for ScrubSecrets to remove from
// a driver's error text that may quote them. A string that is not a scheme://… URL is returned
// whole, as it may be a secret.
func (r URLRedactor) Secrets(raw string) []string {
	p, ok := splitURL(raw)
	if !ok {
		return withUnescaped(nil, raw)
	}
	var out []string
	if p.hasPassword {
		out = withUnescaped(out, p.password)
	}
	if p.hasQuery {
		for _, part := range strings.Split(p.query, "&") {
			key, value, hasValue := strings.Cut(part, "=")
			switch {
			case r.harmless(key):
			case hasValue:
				out = withUnescaped(out, value)
				out = withListItems(out, value)
			default:
				out = withUnescaped(out, part)
			}
		}
	}
	if p.hasFragment {
		out = withUnescaped(out, p.fragment)
	}
	return out
}

func (r URLRedactor) harmless(key string) bool {
	if k, err := url.QueryUnescape(key); err == nil {
		key = k
	}
	for _, h := range r.Harmless {
		if strings.EqualFold(h, key) {
			return true
		}
	}
	return false
}

// ScrubSecrets returns text with every occurrence of each secret (of at least three bytes)
// replaced by Redacted: for error text from drivers and servers that may quote a connection
// string. Longer secrets go first, so one that contains another is removed whole.
func ScrubSecrets(text string, secrets []string) string {
	sorted := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s) >= minScrubLen {
			sorted = append(sorted, s)
		}
	}
	// Insertion sort by length, longest first: the lists are a handful of entries.
	for i := 1; i < len(sorted); i++ {
		for j := i; j > 0 && len(sorted[j]) > len(sorted[j-1]); j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for _, s := range sorted {
		text = strings.ReplaceAll(text, s, Redacted)
	}
	return text
}

// withListItems appends the items of a value holding a list such as
// AWS_SESSION_TOKEN:tok,SERVICE_NAME:x (MongoDB's authMechanismProperties): a driver may quote
// one item, or the token alone.
func withListItems(out []string, value string) []string {
	if v, err := url.QueryUnescape(value); err == nil {
		value = v
	}
	if !strings.ContainsAny(value, ",:") {
		return out
	}
	for _, item := range strings.Split(value, ",") {
		out = append(out, item)
		if _, v, ok := strings.Cut(item, ":"); ok && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// withUnescaped appends s and, when it differs, its URL-unescaped form.
func withUnescaped(out []string, s string) []string {
	if s == "" {
		return out
	}
	out = append(out, s)
	if u, err := url.QueryUnescape(s); err == nil && u != s && u != "" {
		out = append(out, u)
	}
	if u, err := url.PathUnescape(s); err == nil && u != s && u != "" {
		out = append(out, u)
	}
	return out
}

// urlParts is a URL split by hand: MongoDB and PostgreSQL allow several comma-separated hosts,
// which url.Parse rejects, and a password with an unescaped / ? # or @ must still be found whole.
type urlParts struct {
	scheme, user, password, hosts, path, query, fragment string
	hasUser, hasPassword, hasPath, hasQuery, hasFragment bool
}

func splitURL(raw string) (urlParts, bool) {
	var p urlParts
	var rest string
	var ok bool
	if p.scheme, rest, ok = strings.Cut(raw, "://"); !ok || !validScheme(p.scheme) {
		return p, false
	}
	// The user information ends at the last @ anywhere: a password holding / ? # or @ is then
	// found whole. A query or fragment holding an @ hides more than the password, which errs on
	// the safe side.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		p.hasUser = true
		p.user, p.password, p.hasPassword = strings.Cut(rest[:at], ":")
		if strings.ContainsAny(p.user, "/?#") {
			// The @ sits in a path, query or fragment, or the user name is mangled: show none
			// of what precedes it.
			p.user, p.password, p.hasPassword = Redacted, rest[:at], true
		}
		rest = rest[at+1:]
	}
	rest, p.fragment, p.hasFragment = strings.Cut(rest, "#")
	rest, p.query, p.hasQuery = strings.Cut(rest, "?")
	p.hosts, p.path, p.hasPath = strings.Cut(rest, "/")
	return p, true
}

// validScheme reports whether s is a URL scheme: a letter, then letters, digits, + - or .
func validScheme(s string) bool {
	for i, c := range s {
		letter := ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !letter && (i == 0 || !('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}
