package postgres

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/txoutbox/outbox/backend"
)

// harmlessParams are the connection parameters whose values may be shown, in URLs
// (postgres://…?sslmode=require) and key=value strings alike. Every other value — password,
// sslpassword, options, and any parameter added later — is masked: an allow-list, so nothing
// new leaks by default.
var harmlessParams = []string{
	"host", "hostaddr", "port", "dbname", "user", "sslmode", "sslrootcert", "sslcert", "sslkey",
	"sslsni", "sslnegotiation", "channel_binding", "gssencmode", "krbsrvname", "require_auth",
	"connect_timeout", "application_name", "fallback_application_name", "target_session_attrs",
	"load_balance_hosts", "search_path", "timezone", "client_encoding", "service", "servicefile",
	"passfile", "min_protocol_version", "max_protocol_version", "replication",
	"default_query_exec_mode", "statement_cache_capacity", "description_cache_capacity",
	"pool_max_conns", "pool_min_conns", "pool_min_idle_conns", "pool_max_conn_lifetime",
	"pool_max_conn_lifetime_jitter", "pool_max_conn_idle_time", "pool_health_check_period",
}

// redactor hides the secrets of postgres:// URLs: the one place this module decides what of a
// connection string may be shown.
var redactor = backend.URLRedactor{Harmless: harmlessParams}

// hiddenConnString stands in for a connection string that does not parse: all of it may be secret.
const hiddenConnString = "(connection string hidden: it does not parse)"

// RedactConnString returns a connection string fit for logs and output: in a postgres:// URL the
// password and every parameter value not known to be harmless are masked; in a key=value string
// every value not known to be harmless. Config's String, GoString and MarshalJSON use it, and so
// does the outbox command.
func RedactConnString(s string) string {
	if out, ok := redactor.Redact(s); ok {
		return out
	}
	pairs, ok := parseKeyValues(s)
	if !ok {
		return hiddenConnString
	}
	parts := make([]string, len(pairs))
	for i, kv := range pairs {
		if isHarmless(kv.key) {
			parts[i] = kv.key + "=" + kv.raw
		} else {
			parts[i] = kv.key + "=" + backend.Redacted
		}
	}
	return strings.Join(parts, " ")
}

// ConnStringSecrets returns the secrets RedactConnString hides in s, as written and unquoted or
// unescaped, so they can be scrubbed from a driver's error text (backend.ScrubSecrets).
func ConnStringSecrets(s string) []string {
	if _, ok := redactor.Redact(s); ok {
		return redactor.Secrets(s)
	}
	pairs, ok := parseKeyValues(s)
	if !ok {
		return []string{s}
	}
	var out []string
	for _, kv := range pairs {
		if !isHarmless(kv.key) && kv.value != "" {
			out = append(out, kv.raw, kv.value)
		}
	}
	return out
}

func isHarmless(key string) bool {
	for _, h := range harmlessParams {
		if h == key {
			return true
		}
	}
	return false
}

// keyValue is one setting of a key=value connection string: raw as written (quotes included),
// value once unquoted.
type keyValue struct{ key, raw, value string }

// parseKeyValues splits a libpq key=value string: key = value pairs separated by spaces, values
// bare or single-quoted, with \ escaping the next character. It reports false on anything else.
func parseKeyValues(s string) ([]keyValue, bool) {
	var out []keyValue
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i == len(s) {
			return out, len(out) > 0
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, false
		}
		i++
		skipSpace()
		start = i
		var value strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			for ; i < len(s) && s[i] != '\''; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				value.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, false // unterminated quote
			}
			i++
		} else {
			for ; i < len(s) && !isSpace(s[i]); i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				value.WriteByte(s[i])
			}
		}
		out = append(out, keyValue{key: key, raw: s[start:i], value: value.String()})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// String describes the config for logs. It never shows a secret: not the Password field, not a
// password, sslpassword or unknown parameter inside URL or ListenURL.
func (c Config) String() string {
	d := c.withDefaults()
	var b strings.Builder
	b.WriteString("postgres.Config{")
	switch {
	case c.Pool != nil:
		b.WriteString("pool=(caller's)")
	case c.URL != "":
		b.WriteString("url=" + RedactConnString(c.URL))
	default:
		b.WriteString("host=" + d.Host + " port=" + strconv.Itoa(d.Port) + " database=" + d.Database + " user=" + d.User + " sslmode=" + d.SSLMode)
		if c.Password != "" {
			b.WriteString(" password=" + backend.Redacted)
		}
	}
	if c.ListenURL != "" {
		b.WriteString(" listen_url=" + RedactConnString(c.ListenURL))
	}
	b.WriteString(" schema=" + d.Schema + " table=" + d.Table + " keep_delivered=" + strconv.FormatBool(d.KeepDelivered))
	if d.WAL != nil {
		b.WriteString(" wal_slot=" + d.WAL.Slot)
		if d.WAL.ReplicationURL != "" {
			b.WriteString(" replication_url=" + RedactConnString(d.WAL.ReplicationURL))
		}
	}
	b.WriteString("}")
	return b.String()
}

// GoString keeps %#v from printing the secrets String hides.
func (c Config) GoString() string { return c.String() }

// MarshalJSON encodes the config the way json.Marshal would, field names included, with every
// secret masked and the caller's pool and hooks reduced to whether they are set: what a
// structured logger (zap.Reflect) writes.
func (c Config) MarshalJSON() ([]byte, error) {
	type shown struct {
		URL             string        `json:"URL,omitempty"`
		Host            string        `json:"Host,omitempty"`
		Port            int           `json:"Port,omitempty"`
		Database        string        `json:"Database,omitempty"`
		User            string        `json:"User,omitempty"`
		Password        string        `json:"Password,omitempty"`
		SSLMode         string        `json:"SSLMode,omitempty"`
		Pool            string        `json:"Pool,omitempty"`
		MaxConns        int32         `json:"MaxConns,omitempty"`
		QueryExecMode   string        `json:"QueryExecMode,omitempty"`
		ConnectTimeout  time.Duration `json:"ConnectTimeout,omitempty"`
		ListenURL       string        `json:"ListenURL,omitempty"`
		Schema          string        `json:"Schema,omitempty"`
		Table           string        `json:"Table,omitempty"`
		KeepDelivered   bool          `json:"KeepDelivered"`
		MaxPayloadBytes int           `json:"MaxPayloadBytes,omitempty"`
		NotifyInterval  time.Duration `json:"NotifyInterval,omitempty"`
		WriteHooks      int           `json:"WriteHooks,omitempty"`
		WAL             *WALConfig    `json:"WAL,omitempty"`
	}
	v := shown{
		Host: c.Host, Port: c.Port, Database: c.Database, User: c.User, SSLMode: c.SSLMode,
		MaxConns: c.MaxConns, ConnectTimeout: c.ConnectTimeout, Schema: c.Schema, Table: c.Table,
		KeepDelivered: c.KeepDelivered, MaxPayloadBytes: c.MaxPayloadBytes,
		NotifyInterval: c.NotifyInterval, WriteHooks: len(c.WriteHooks),
	}
	if c.URL != "" {
		v.URL = RedactConnString(c.URL)
	}
	if c.ListenURL != "" {
		v.ListenURL = RedactConnString(c.ListenURL)
	}
	if c.WAL != nil {
		w := *c.WAL
		if w.ReplicationURL != "" {
			w.ReplicationURL = RedactConnString(w.ReplicationURL)
		}
		v.WAL = &w
	}
	if c.Password != "" {
		v.Password = backend.Redacted
	}
	if c.Pool != nil {
		v.Pool = "(caller's)"
	}
	if c.QueryExecMode != 0 {
		v.QueryExecMode = c.QueryExecMode.String()
	}
	return json.Marshal(v)
}
