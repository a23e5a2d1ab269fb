package console_test

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/console"
	"github.com/txoutbox/outbox/store/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	token  = "console-test-token-0123456789"
	prefix = "/ops/"
	// payloadMarker is in every seeded payload: no page or log may show it unless revealed.
	payloadMarker = "p4yl0ad-marker"
)

// dead describes one dead letter to seed.
type dead struct{ Type, Key, Err string }

// seed writes n pending messages and the dead letters, and returns the dead letters' IDs.
func seed(t *testing.T, st outbox.Store, add func(context.Context, ...*outbox.Message) error, pending int, letters ...dead) []string {
	t.Helper()
	ctx := context.Background()
	var msgs []*outbox.Message
	for _, d := range letters {
		m, err := outbox.NewMessage(d.Type, map[string]string{"secret": payloadMarker})
		if err != nil {
			t.Fatal(err)
		}
		m.Key = d.Key
		m.Headers = map[string]string{"trace": "t-" + d.Key}
		msgs = append(msgs, m)
	}
	if len(msgs) > 0 {
		if err := add(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		claimToken := "seed-" + msgs[0].ID
		claimed, err := st.Claim(ctx, outbox.ClaimRequest{Token: claimToken, Limit: len(msgs) + 10, Lease: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		errOf := map[string]string{}
		for i, m := range msgs {
			errOf[m.ID] = letters[i].Err
		}
		var failures []outbox.Failure
		for _, m := range claimed {
			if e, ok := errOf[m.ID]; ok {
				failures = append(failures, outbox.Failure{ID: m.ID, Error: e, Dead: true})
			}
		}
		if n, err := st.Nack(ctx, claimToken, failures); err != nil || n != len(msgs) {
			t.Fatalf("seed: nack dead = %d, %v; want %d", n, err, len(msgs))
		}
	}
	for range pending {
		m, err := outbox.NewMessage("PENDING", map[string]string{"secret": payloadMarker})
		if err != nil {
			t.Fatal(err)
		}
		if err := add(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

func seedMemory(t *testing.T, st *memory.Store, pending int, letters ...dead) []string {
	return seed(t, st, st.Add, pending, letters...)
}

// client talks to a console mounted under prefix, keeping cookies.
type client struct {
	t    *testing.T
	base *url.URL // the server's URL with prefix
	http *http.Client
}

// serve mounts the console under prefix on a test server.
func serve(t *testing.T, cfg console.Config) *client {
	t.Helper()
	h, err := console.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(prefix, http.StripPrefix(strings.TrimSuffix(prefix, "/"), h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := *srv.Client()
	hc.Jar = jar
	base, _ := url.Parse(srv.URL + prefix)
	return &client{t: t, base: base, http: &hc}
}

func (c *client) url(rel string) string { return c.base.String() + rel }

func (c *client) do(req *http.Request) (int, string) {
	c.t.Helper()
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (c *client) get(rel string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url(rel), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.do(req)
}

func (c *client) post(rel string, form url.Values, header ...string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url(rel), strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.do(req)
}

// api posts a JSON body with a bearer token ("" for none).
func (c *client) api(rel, body, bearer string) (int, map[string]any) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url(rel), strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	status, text := c.do(req)
	return status, decode(c.t, text)
}

func (c *client) getJSON(rel string) (int, map[string]any) {
	c.t.Helper()
	status, text := c.get(rel)
	return status, decode(c.t, text)
}

func decode(t *testing.T, text string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, text)
	}
	return v
}

func (c *client) login() {
	c.t.Helper()
	status, body := c.post("login", url.Values{"token": {token}})
	if status != http.StatusOK || !strings.Contains(body, "log out") {
		c.t.Fatalf("login: %d\n%s", status, body)
	}
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// confirmForm returns the hidden fields of the confirm page's form.
func confirmForm(t *testing.T, body string) url.Values {
	t.Helper()
	start := strings.Index(body, `id="confirm"`)
	if start < 0 {
		t.Fatalf("no confirm form:\n%s", body)
	}
	end := strings.Index(body[start:], "</form>")
	v := url.Values{}
	for _, m := range hiddenInput.FindAllStringSubmatch(body[start:start+end], -1) {
		v.Add(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// csrfOf returns the CSRF token of a page (the logout form carries it on every page).
func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

func wantStatus(t *testing.T, what string, got, want int, body any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d\n%v", what, got, want, body)
	}
}

func deadCount(t *testing.T, insp outbox.Inspector) int64 {
	t.Helper()
	c, err := insp.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.Dead
}

func rows(body string) int { return strings.Count(body, `<tr data-id="`) }
