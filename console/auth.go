package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// cookieName is the session cookie set by the login page. The cookie has no Path attribute,
// so the browser scopes it to the prefix the console is mounted under.
const cookieName = "outbox_console_session"

// auth checks the token and makes and checks sessions and CSRF tokens. A session is
// "expiry.nonce.mac", the MAC keyed by a hash of the token: it holds no secret, needs no
// server state, and every session ends when the token changes. A form's CSRF token is an HMAC
// of the session, so a page of another site can neither read nor forge it.
type auth struct {
	token []byte // sha256 of the token, for constant-time comparison
	key   []byte // MAC key derived from the token
	ttl   time.Duration
	now   func() time.Time
}

func newAuth(token string, ttl time.Duration) *auth {
	sum := sha256.Sum256([]byte(token))
	key := sha256.Sum256([]byte("outbox console session key\x00" + token))
	return &auth{token: sum[:], key: key[:], ttl: ttl, now: time.Now}
}

// checkToken compares a presented token with the configured one in constant time.
func (a *auth) checkToken(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(sum[:], a.token) == 1
}

func (a *auth) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a fresh session value.
func (a *auth) newSession() string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	exp := strconv.FormatInt(a.now().Add(a.ttl).Unix(), 10)
	n := base64.RawURLEncoding.EncodeToString(nonce[:])
	return exp + "." + n + "." + a.mac("session", exp, n)
}

// validSession reports whether v is a session this console made and it has not expired.
func (a *auth) validSession(v string) bool {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(a.mac("session", parts[0], parts[1]))) {
		return false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	return err == nil && a.now().Unix() < exp
}

// session returns the request's valid session, or "".
func (a *auth) session(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil || !a.validSession(c.Value) {
		return ""
	}
	return c.Value
}

// csrf is the CSRF token of a session.
func (a *auth) csrf(session string) string { return a.mac("csrf", session) }

// checkCSRF compares a form's CSRF token with the session's.
func (a *auth) checkCSRF(session, presented string) bool {
	return session != "" && hmac.Equal([]byte(presented), []byte(a.csrf(session)))
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// sameOrigin refuses a browser request sent from a page of another origin: browsers send
// Origin on every cross-site POST (and Sec-Fetch-Site), so a form post without a matching one
// is refused even before its CSRF token is checked. Requests without either (curl, tests) pass.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}
