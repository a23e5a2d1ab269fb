package storeurl

import (
	"strings"

	"github.com/txoutbox/outbox/backend"
	"github.com/txoutbox/outbox/store/mongo"
	"github.com/txoutbox/outbox/store/postgres"
)

// What a store URL may show is decided by its backend's module, once (postgres.RedactConnString,
// mongo.RedactURI: allow-lists of harmless parameters), so the command and the libraries never
// disagree. SQLite's URL is a path; of its query only these options are known to be harmless.
var sqliteRedactor = backend.URLRedactor{Harmless: []string{"mode", "cache", "immutable", "vfs", "_txlock", "_time_format"}}

// mysqlRedactor shows the MySQL URL's parameters that hold no secret (go-sql-driver/mysql's).
var mysqlRedactor = backend.URLRedactor{Harmless: []string{"charset", "collation", "loc", "parseTime", "timeout",
	"readTimeout", "writeTimeout", "tls", "maxAllowedPacket", "interpolateParams"}}

// hiddenURL stands in for a store URL no backend recognises: it might be a DSN with a password.
const hiddenURL = "(unrecognised store URL, hidden)"

// Redact returns raw fit for logs and output: the password and every query value not known to
// be harmless are replaced with xxxxx; a URL no backend recognises is hidden whole.
func Redact(raw string) string {
	kind, err := kindOf(raw)
	if err != nil {
		return hiddenURL
	}
	switch kind {
	case Postgres:
		return postgres.RedactConnString(raw)
	case Mongo:
		return mongo.RedactURI(raw)
	case MySQL:
		if r, ok := mysqlRedactor.Redact(raw); ok {
			return r
		}
		return hiddenURL
	}
	path, query, hasQuery := strings.Cut(raw, "?")
	if !hasQuery {
		return path // a path carries no credentials
	}
	return path + "?" + sqliteRedactor.RedactQuery(query)
}

// Scrub removes the secrets of raw — what Redact masks, as written and URL-unescaped — from
// text: for error messages of drivers that might quote the connection string.
func Scrub(text, raw string) string {
	return backend.ScrubSecrets(text, secrets(raw))
}

func secrets(raw string) []string {
	kind, err := kindOf(raw)
	if err != nil {
		// Unrecognised: every secret-looking part, and the string itself.
		return append(backend.URLRedactor{}.Secrets(raw), raw)
	}
	switch kind {
	case Postgres:
		return postgres.ConnStringSecrets(raw)
	case Mongo:
		return mongo.URISecrets(raw)
	case MySQL:
		return mysqlRedactor.Secrets(raw)
	}
	_, query, hasQuery := strings.Cut(raw, "?")
	if !hasQuery {
		return nil
	}
	return sqliteRedactor.Secrets("sqlite://x?" + query)
}

// split splits scheme://[user[:password]@]hosts[/path][?query] by hand: MongoDB allows several
// comma-separated hosts, which url.Parse rejects.
type parts struct {
	scheme, user, password, hosts, path, query string
	hasUser, hasPassword, hasPath, hasQuery    bool
}

func split(raw string) (parts, bool) {
	var p parts
	var rest string
	var ok bool
	if p.scheme, rest, ok = strings.Cut(raw, "://"); !ok || p.scheme == "" {
		return p, false
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		p.hasUser = true
		p.user, p.password, p.hasPassword = strings.Cut(rest[:at], ":")
		rest = rest[at+1:]
	}
	rest, p.query, p.hasQuery = strings.Cut(rest, "?")
	p.hosts, p.path, p.hasPath = strings.Cut(rest, "/")
	return p, true
}
