package storeurl

import (
	"net/url"
	"strings"
)

// parts splits scheme://[user[:password]@]hosts[/path][?query] by hand: MongoDB allows several
// comma-separated hosts, which url.Parse rejects.
type parts struct {
	scheme, user, password, hosts, path, query string
	hasUser, hasPassword, hasPath, hasQuery    bool
}

func split(raw string) (parts, bool) {
	var p parts
	var rest string
	var ok bool
	if p.scheme, rest, ok = strings.Cut(raw, "://"); !ok || !validScheme(p.scheme) {
		return p, false
	}
	// The user information ends at the last @ anywhere: a password with an unescaped /, ? or @
	// in it must still be found whole. A query holding an @ then hides more than the password,
	// which errs on the safe side.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		p.hasUser = true
		p.user, p.password, p.hasPassword = strings.Cut(rest[:at], ":")
		rest = rest[at+1:]
	}
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

// Redact returns raw fit for logs and output: the password in the user information and the
// values of query parameters that may hold secrets are replaced with xxxxx.
func Redact(raw string) string {
	p, ok := split(raw)
	if !ok {
		if strings.HasPrefix(raw, "sqlite:") {
			return raw // a path carries no credentials
		}
		return "(unrecognised store URL, hidden)" // it might be a DSN with a password in it
	}
	out := p.scheme + "://"
	if p.hasUser {
		out += p.user
		if p.hasPassword {
			out += ":xxxxx"
		}
		out += "@"
	}
	out += p.hosts
	if p.hasPath {
		out += "/" + p.path
	}
	if !p.hasQuery {
		return out
	}
	values, err := url.ParseQuery(p.query)
	if err != nil {
		return out + "?(redacted)"
	}
	for key := range values {
		if secretParam(key) {
			values[key] = []string{"xxxxx"}
		}
	}
	return out + "?" + values.Encode()
}

// secretParam reports whether a query parameter may carry a secret.
func secretParam(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "secret", "token", "key"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// Scrub removes the secrets of raw — the password of its user information and the values of
// secret-looking query parameters, raw and URL-unescaped — from text: for error messages of
// drivers that might quote the connection string.
func Scrub(text, raw string) string {
	for _, secret := range secrets(raw) {
		if len(secret) < 3 { // too short to replace without mangling the text; drivers never echo it anyway
			continue
		}
		text = strings.ReplaceAll(text, secret, "xxxxx")
		if u, err := url.QueryUnescape(secret); err == nil && u != secret {
			text = strings.ReplaceAll(text, u, "xxxxx")
		}
	}
	return text
}

func secrets(raw string) []string {
	p, ok := split(raw)
	if !ok {
		return nil
	}
	var out []string
	if p.hasPassword {
		out = append(out, p.password)
	}
	if values, err := url.ParseQuery(p.query); err == nil {
		for key, vs := range values {
			if secretParam(key) {
				out = append(out, vs...)
			}
		}
	}
	return out
}
