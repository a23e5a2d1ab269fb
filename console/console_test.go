package console_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/txoutbox/outbox"
	"github.com/txoutbox/outbox/console"
	"github.com/txoutbox/outbox/store/memory"
	transport "github.com/txoutbox/outbox/transport/memory"
)

func config(stores ...*memory.Store) console.Config {
	cfg := console.Config{Token: token}
	for i, st := range stores {
		cfg.Outboxes = append(cfg.Outboxes, console.Outbox{Name: []string{"orders", "billing", "third"}[i], Store: st})
	}
	return cfg
}

// mixed is a set of dead letters over two types and two keys.
var mixed = []dead{
	{"ORDER_PLACED", "k1", "sqs: timeout after 5s"},
	{"ORDER_PLACED", "k2", "sqs: connection refused"},
	{"ORDER_PAID", "k1", "sqs: timeout after 9s"},
	{"ORDER_PAID", "k3", "permanent: message too large"},
}

func TestOverviewCounts(t *testing.T) {
	orders, billing := memory.New(), memory.New()
	seedMemory(t, orders, 2, mixed...)
	seedMemory(t, billing, 5)
	c := serve(t, config(orders, billing))

	status, body := c.get("")
	wantStatus(t, "overview", status, http.StatusOK, body)
	for _, want := range []string{
		`<meta name="robots" content="noindex, nofollow">`,
		`<tr data-outbox="orders">`, `data-pending="2"`, `data-dead="4"`,
		`<tr data-outbox="billing">`, `data-pending="5"`, `data-dead="0"`,
		`href="./outboxes/orders/dead"`, `href="./static/console.css"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("overview lacks %s\n%s", want, body)
		}
	}
	if i, j := strings.Index(body, `data-outbox="orders"`), strings.Index(body, `data-outbox="billing"`); i > j {
		t.Error("outboxes not in the configured order")
	}

	status, v := c.getJSON("api/outboxes")
	wantStatus(t, "api/outboxes", status, http.StatusOK, v)
	list := v["outboxes"].([]any)
	first, second := list[0].(map[string]any), list[1].(map[string]any)
	if first["name"] != "orders" || first["pending"] != 2.0 || first["dead"] != 4.0 || first["oldest_pending"] == nil {
		t.Errorf("api orders = %v", first)
	}
	if second["name"] != "billing" || second["pending"] != 5.0 || second["dead"] != 0.0 {
		t.Errorf("api billing = %v", second)
	}
	status, v = c.getJSON("api/outboxes/billing")
	if status != http.StatusOK || v["pending"] != 5.0 {
		t.Errorf("api/outboxes/billing = %d %v", status, v)
	}
}

func TestDeadListFilter(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 1, mixed...)
	c := serve(t, config(st))
	for _, tc := range []struct {
		query string
		want  []int // indexes into mixed
	}{
		{"", []int{0, 1, 2, 3}},
		{"type=ORDER_PLACED", []int{0, 1}},
		{"key=k1", []int{0, 2}},
		{"error=timeout", []int{0, 2}},
		{"type=ORDER_PAID&error=timeout", []int{2}},
		{"type=ORDER_PAID&key=k2", nil},
		{"id=" + ids[3], []int{3}},
	} {
		status, body := c.get("outboxes/orders/dead?" + tc.query)
		wantStatus(t, tc.query, status, http.StatusOK, body)
		if got := rows(body); got != len(tc.want) {
			t.Errorf("%q: %d rows, want %d", tc.query, got, len(tc.want))
		}
		for _, i := range tc.want {
			if !strings.Contains(body, `<tr data-id="`+ids[i]+`">`) {
				t.Errorf("%q: %s (%v) not listed", tc.query, ids[i], mixed[i])
			}
		}
		if strings.Contains(body, payloadMarker) {
			t.Errorf("%q: the list shows a payload", tc.query)
		}
		status, v := c.getJSON("api/outboxes/orders/dead?" + tc.query)
		wantStatus(t, "api "+tc.query, status, http.StatusOK, v)
		if got := len(v["dead"].([]any)); got != len(tc.want) {
			t.Errorf("api %q: %d dead, want %d", tc.query, got, len(tc.want))
		}
	}
	// The filter is kept in the form and in the bulk links.
	_, body := c.get("outboxes/orders/dead?type=ORDER_PAID&error=timeout")
	for _, want := range []string{`name="type" value="ORDER_PAID"`, `dead/confirm?op=requeue&amp;error=timeout&amp;type=ORDER_PAID"`} {
		if !strings.Contains(body, want) {
			t.Errorf("list lacks %s\n%s", want, body)
		}
	}
}

func TestDetailPayloadHiddenUntilRevealed(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 0, mixed...)
	c := serve(t, config(st))
	status, body := c.get("outboxes/orders/dead/" + ids[1])
	wantStatus(t, "detail", status, http.StatusOK, body)
	for _, want := range []string{"ORDER_PLACED", "k2", "sqs: connection refused", "t-k2", `id="reveal"`, `href="../../../outboxes/orders/dead"`} {
		if !strings.Contains(body, want) {
			t.Errorf("detail lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, payloadMarker) {
		t.Error("the detail shows the payload before it is revealed")
	}
	_, body = c.get("outboxes/orders/dead/" + ids[1] + "?payload=1")
	if !strings.Contains(body, `<pre id="payload">`) || !strings.Contains(body, payloadMarker) {
		t.Errorf("revealed detail lacks the payload\n%s", body)
	}
}

func TestHidePayloadsNeverRendersThem(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 0, mixed...)
	cfg := config(st)
	cfg.HidePayloads = true
	c := serve(t, cfg)
	for _, rel := range []string{
		"", "outboxes/orders/dead", "outboxes/orders/dead/" + ids[0], "outboxes/orders/dead/" + ids[0] + "?payload=1",
		"api/outboxes/orders/dead", "api/outboxes/orders/dead/" + ids[0], "api/outboxes/orders/dead?id=" + ids[0],
	} {
		status, body := c.get(rel)
		wantStatus(t, rel, status, http.StatusOK, body)
		if strings.Contains(body, payloadMarker) {
			t.Errorf("%s shows a payload with HidePayloads:\n%s", rel, body)
		}
	}
	if _, body := c.get("outboxes/orders/dead/" + ids[0]); !strings.Contains(body, `id="payload-hidden"`) || strings.Contains(body, `id="reveal"`) {
		t.Errorf("detail offers to reveal the payload with HidePayloads:\n%s", body)
	}
}

// confirmAndPost opens the confirm page for op over query, checks its count, and posts it.
func confirmAndPost(t *testing.T, c *client, op, query string, wantCount int) (int, string) {
	t.Helper()
	status, body := c.get("outboxes/orders/dead/confirm?op=" + op + "&" + query)
	wantStatus(t, "confirm", status, http.StatusOK, body)
	form := confirmForm(t, body)
	if form.Get("count") != strconv.Itoa(wantCount) {
		t.Fatalf("confirm carries count %q, want %d", form.Get("count"), wantCount)
	}
	return c.post("outboxes/orders/dead/"+op, form)
}

func TestRequeueGroupRelayDelivers(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 0, mixed...)
	broker := transport.New()
	relay, err := outbox.NewRelay(st, broker, outbox.Config{PollInterval: 20 * time.Millisecond, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := relay.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := relay.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	c := serve(t, config(st))
	c.login()

	status, body := confirmAndPost(t, c, "requeue", "type=ORDER_PLACED", 2)
	wantStatus(t, "requeue", status, http.StatusOK, body)
	if !strings.Contains(body, `id="done" data-n="2"`) {
		t.Fatalf("requeue page:\n%s", body)
	}
	if err := broker.WaitFor(ctx, 2); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range broker.Received() {
		got = append(got, m.ID)
	}
	slices.Sort(got)
	want := []string{ids[0], ids[1]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("relay delivered %v, want the requeued %v", got, want)
	}
	if n := deadCount(t, st); n != 2 {
		t.Errorf("dead = %d after requeueing 2 of 4", n)
	}

	// The API requeues one more by ID, and the relay delivers it too.
	status, v := c.api("api/outboxes/orders/dead/requeue", `{"ids":["`+ids[3]+`"],"expect":1}`, token)
	if status != http.StatusOK || v["requeued"] != 1.0 {
		t.Fatalf("api requeue = %d %v", status, v)
	}
	if err := broker.WaitFor(ctx, 3); err != nil {
		t.Fatal(err)
	}
}

func TestPurgeWithConfirm(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 1, mixed...)
	c := serve(t, config(st))
	c.login()
	status, body := confirmAndPost(t, c, "purge", "key=k1", 2)
	wantStatus(t, "purge", status, http.StatusOK, body)
	if !strings.Contains(body, `data-n="2"`) || !strings.Contains(body, "purged") {
		t.Fatalf("purge page:\n%s", body)
	}
	if n := deadCount(t, st); n != 2 {
		t.Errorf("dead = %d after purging 2 of 4", n)
	}
	_, body = c.get("outboxes/orders/dead")
	if rows(body) != 2 || strings.Contains(body, ids[0]) || strings.Contains(body, ids[2]) {
		t.Errorf("the purged letters are still listed:\n%s", body)
	}
	// One event from its detail page.
	status, body = c.get("outboxes/orders/dead/" + ids[1])
	wantStatus(t, "detail", status, http.StatusOK, body)
	if !strings.Contains(body, "dead/confirm?op=purge&amp;id="+ids[1]) {
		t.Fatalf("detail has no purge link:\n%s", body)
	}
	status, body = confirmAndPost(t, c, "purge", "id="+ids[1], 1)
	wantStatus(t, "purge one", status, http.StatusOK, body)
	if status, _ := c.get("outboxes/orders/dead/" + ids[1]); status != http.StatusNotFound {
		t.Errorf("a purged letter's page: %d, want 404", status)
	}
	// The API: an empty filter is refused, "all" purges the rest.
	status, v := c.api("api/outboxes/orders/dead/purge", `{}`, token)
	wantStatus(t, "api purge {}", status, http.StatusBadRequest, v)
	status, v = c.api("api/outboxes/orders/dead/purge", `{"all":true}`, token)
	if status != http.StatusOK || v["purged"] != 1.0 {
		t.Errorf("api purge all = %d %v", status, v)
	}
	if n := deadCount(t, st); n != 0 {
		t.Errorf("dead = %d after purging all", n)
	}
}

func TestStaleConfirmRefused(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 0, mixed...)
	c := serve(t, config(st))
	c.login()

	// The count changed: one more died since the confirm was shown.
	_, body := c.get("outboxes/orders/dead/confirm?op=purge&type=ORDER_PAID")
	form := confirmForm(t, body)
	seedMemory(t, st, 0, dead{"ORDER_PAID", "k9", "late"})
	status, body := c.post("outboxes/orders/dead/purge", form)
	wantStatus(t, "stale purge", status, http.StatusConflict, body)
	for _, want := range []string{`id="stale"`, "You confirmed purge of 2", `data-count="3"`} {
		if !strings.Contains(body, want) {
			t.Errorf("stale page lacks %s\n%s", want, body)
		}
	}
	if n := deadCount(t, st); n != 5 {
		t.Fatalf("dead = %d after a stale confirm, want 5 (nothing changed)", n)
	}

	// The same count over another set: one requeued, another died.
	_, body = c.get("outboxes/orders/dead/confirm?op=purge&type=ORDER_PAID")
	form = confirmForm(t, body)
	if n, err := st.Requeue(context.Background(), outbox.DeadFilter{IDs: []string{ids[2]}}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	seedMemory(t, st, 0, dead{"ORDER_PAID", "k8", "later"})
	status, body = c.post("outboxes/orders/dead/purge", form)
	wantStatus(t, "stale purge, same count", status, http.StatusConflict, body)
	if n := deadCount(t, st); n != 5 {
		t.Fatalf("dead = %d after a stale confirm, want 5", n)
	}
	// The page shown again confirms the new set.
	status, body = c.post("outboxes/orders/dead/purge", confirmForm(t, body))
	wantStatus(t, "purge after review", status, http.StatusOK, body)
	if n := deadCount(t, st); n != 2 {
		t.Errorf("dead = %d, want 2", n)
	}

	// The API's expect.
	status, v := c.api("api/outboxes/orders/dead/requeue", `{"type":"ORDER_PLACED","expect":5}`, token)
	if status != http.StatusConflict || v["matched"] != 2.0 {
		t.Errorf("api requeue with a wrong expect = %d %v", status, v)
	}
	if n := deadCount(t, st); n != 2 {
		t.Errorf("dead = %d after a refused API call", n)
	}
}

func TestMutationsNeedToken(t *testing.T) {
	st := memory.New()
	seedMemory(t, st, 0, mixed...)
	c := serve(t, config(st))

	// Without a login, the confirm page offers the login and no form.
	status, body := c.get("outboxes/orders/dead/confirm?op=purge")
	wantStatus(t, "confirm", status, http.StatusOK, body)
	if strings.Contains(body, `id="confirm"`) || !strings.Contains(body, `href="../../../login"`) {
		t.Errorf("confirm page without a login:\n%s", body)
	}
	status, body = c.post("outboxes/orders/dead/purge", url.Values{"count": {"4"}, "type": {""}})
	wantStatus(t, "form without login", status, http.StatusUnauthorized, body)
	status, body = c.post("login", url.Values{"token": {"wrong-" + token}})
	wantStatus(t, "wrong login", status, http.StatusUnauthorized, body)
	if !strings.Contains(body, `id="login-failed"`) {
		t.Errorf("wrong login page:\n%s", body)
	}
	for _, bearer := range []string{"", "wrong-" + token} {
		status, v := c.api("api/outboxes/orders/dead/purge", `{"all":true}`, bearer)
		wantStatus(t, "api with bearer "+bearer, status, http.StatusUnauthorized, v)
	}
	// Basic auth or a cookie forged by hand do not count either.
	req, _ := http.NewRequest(http.MethodPost, c.url("api/outboxes/orders/dead/purge"), strings.NewReader(`{"all":true}`))
	req.SetBasicAuth("admin", token)
	if status, _ := c.do(req); status != http.StatusUnauthorized {
		t.Errorf("api with basic auth: %d", status)
	}
	req, _ = http.NewRequest(http.MethodPost, c.url("outboxes/orders/dead/purge"), strings.NewReader("count=4"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "outbox_console_session", Value: "9999999999.AAAA.forged"})
	if status, _ := c.do(req); status != http.StatusUnauthorized {
		t.Errorf("form with a forged session: %d", status)
	}
	if n := deadCount(t, st); n != 4 {
		t.Errorf("dead = %d: an unauthenticated request changed something", n)
	}
}

func TestReadOnlyRefusesMutations(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 0, mixed...)
	c := serve(t, console.Config{Outboxes: []console.Outbox{{Name: "orders", Store: st}}, ReadOnly: true})
	for _, rel := range []string{"", "outboxes/orders/dead", "outboxes/orders/dead/" + ids[0]} {
		status, body := c.get(rel)
		wantStatus(t, rel, status, http.StatusOK, body)
		if strings.Contains(body, "confirm?op=") || !strings.Contains(body, "read-only") {
			t.Errorf("%s offers a mutation in read-only mode:\n%s", rel, body)
		}
	}
	for _, rel := range []string{"outboxes/orders/dead/confirm?op=purge", "login"} {
		if status, body := c.get(rel); status != http.StatusForbidden {
			t.Errorf("GET %s: %d, want 403\n%s", rel, status, body)
		}
	}
	for _, rel := range []string{"outboxes/orders/dead/purge", "outboxes/orders/dead/requeue", "login", "logout"} {
		if status, body := c.post(rel, url.Values{"count": {"4"}, "token": {token}}); status != http.StatusForbidden {
			t.Errorf("POST %s: %d, want 403\n%s", rel, status, body)
		}
	}
	for _, op := range []string{"purge", "requeue"} {
		status, v := c.api("api/outboxes/orders/dead/"+op, `{"all":true}`, token)
		wantStatus(t, "api "+op, status, http.StatusForbidden, v)
	}
	if n := deadCount(t, st); n != 4 {
		t.Errorf("dead = %d: read-only changed something", n)
	}
}

func TestFormsNeedCSRF(t *testing.T) {
	st := memory.New()
	seedMemory(t, st, 0, mixed...)
	c := serve(t, config(st))
	c.login()
	_, body := c.get("outboxes/orders/dead/confirm?op=purge&type=ORDER_PAID")
	form := confirmForm(t, body)

	missing := url.Values{}
	for k, v := range form {
		if k != "csrf" {
			missing[k] = v
		}
	}
	status, body := c.post("outboxes/orders/dead/purge", missing)
	wantStatus(t, "no CSRF token", status, http.StatusForbidden, body)
	if !strings.Contains(body, "CSRF") {
		t.Errorf("the refusal does not say why:\n%s", body)
	}
	wrong := url.Values{}
	for k, v := range missing {
		wrong[k] = v
	}
	wrong.Set("csrf", strings.ToUpper(form.Get("csrf")))
	status, body = c.post("outboxes/orders/dead/purge", wrong)
	wantStatus(t, "wrong CSRF token", status, http.StatusForbidden, body)
	status, body = c.post("outboxes/orders/dead/purge", form, "Origin", "https://evil.example")
	wantStatus(t, "cross-origin post", status, http.StatusForbidden, body)
	status, body = c.post("outboxes/orders/dead/purge", form, "Sec-Fetch-Site", "cross-site")
	wantStatus(t, "cross-site post", status, http.StatusForbidden, body)
	if n := deadCount(t, st); n != 4 {
		t.Fatalf("dead = %d: a refused form changed something", n)
	}
	// The same form with its token (and the page's own origin) works.
	status, body = c.post("outboxes/orders/dead/purge", form, "Origin", strings.TrimSuffix(c.base.Scheme+"://"+c.base.Host, "/"))
	wantStatus(t, "good form", status, http.StatusOK, body)
	// Logging out ends the session: the same form is refused.
	status, _ = c.post("logout", url.Values{"csrf": {form.Get("csrf")}})
	wantStatus(t, "logout", status, http.StatusOK, nil)
	status, body = c.post("outboxes/orders/dead/purge", form)
	wantStatus(t, "after logout", status, http.StatusUnauthorized, body)
}

func TestBadInputChangesNothing(t *testing.T) {
	st := memory.New()
	ids := seedMemory(t, st, 0, mixed...)
	c := serve(t, config(st))
	c.login()
	huge := strings.Repeat("x", console.MaxFilterBytes+1)

	for _, tc := range []struct {
		rel    string
		status int
	}{
		{"outboxes/orders/dead?type=" + huge, http.StatusBadRequest},
		{"outboxes/orders/dead?error=" + huge[:600] + "&key=" + huge[:600], http.StatusBadRequest},
		{"outboxes/orders/dead?id=not-a-uuid", http.StatusBadRequest},
		{"outboxes/orders/dead/confirm?op=purge&type=" + huge, http.StatusBadRequest},
		{"outboxes/orders/dead/confirm?op=explode", http.StatusBadRequest},
		{"outboxes/nope/dead", http.StatusNotFound},
		{"outboxes/orders/dead/not-a-uuid", http.StatusBadRequest},
		{"outboxes/orders/dead/0190a000-0000-7000-8000-000000000000", http.StatusNotFound},
		{"no/such/page", http.StatusNotFound},
		{"api/outboxes/nope", http.StatusNotFound},
		{"api/outboxes/orders/dead?key=" + huge, http.StatusBadRequest},
		{"api/outboxes/orders/dead?limit=-1", http.StatusBadRequest},
		{"api/outboxes/orders/dead/0190a000-0000-7000-8000-000000000000", http.StatusNotFound},
		{"api/nothing", http.StatusNotFound},
	} {
		status, body := c.get(tc.rel)
		if status != tc.status {
			t.Errorf("GET %.80s: %d, want %d\n%s", tc.rel, status, tc.status, body)
		}
		if strings.HasPrefix(tc.rel, "api/") {
			if v := decode(t, body); v["error"] == "" {
				t.Errorf("GET %.80s: no error message: %s", tc.rel, body)
			}
		} else if !strings.Contains(body, `id="message"`) {
			t.Errorf("GET %.80s: not an error page:\n%s", tc.rel, body)
		}
	}

	_, page := c.get("")
	csrf := csrfOf(t, page)
	for _, form := range []url.Values{
		{"csrf": {csrf}, "count": {"1"}, "type": {huge}},
		{"csrf": {csrf}, "count": {"1"}, "id": {"not-a-uuid"}},
		{"csrf": {csrf}, "type": {"ORDER_PAID"}},                    // no count
		{"csrf": {csrf}, "type": {"ORDER_PAID"}, "count": {"many"}}, // not a count
	} {
		if status, body := c.post("outboxes/orders/dead/purge", form); status != http.StatusBadRequest {
			t.Errorf("POST %.80v: %d, want 400\n%s", form, status, body)
		}
	}
	if status, _ := c.post("outboxes/nope/dead/purge", url.Values{"csrf": {csrf}, "count": {"0"}}); status != http.StatusNotFound {
		t.Errorf("POST to an unknown outbox: %d", status)
	}

	for _, body := range []string{
		`{"type":"` + huge + `"}`,
		`{"type":`,
		`not json`,
		``,
		`{"type":"ORDER_PAID"} {"all":true}`,
		`{"typo":"ORDER_PAID"}`,
		`{"ids":["not-a-uuid"]}`,
		`{"ids":"` + ids[0] + `"}`,
		`{"all":"yes"}`,
		`{"error":"` + strings.Repeat("y", 70<<10) + `"}`,
	} {
		status, v := c.api("api/outboxes/orders/dead/purge", body, token)
		if status != http.StatusBadRequest || v["error"] == nil {
			t.Errorf("API body %.60q: %d %v, want 400 with an error", body, status, v)
		}
	}
	if status, v := c.api("api/outboxes/nope/dead/purge", `{"all":true}`, token); status != http.StatusNotFound {
		t.Errorf("API purge of an unknown outbox: %d %v", status, v)
	}
	if status, v := c.api("api/outboxes/orders/dead/explode", `{"all":true}`, token); status != http.StatusNotFound {
		t.Errorf("API unknown action: %d %v", status, v)
	}
	if n := deadCount(t, st); n != 4 {
		t.Errorf("dead = %d: bad input changed something", n)
	}
}

func TestMaxBulk(t *testing.T) {
	st := memory.New()
	seedMemory(t, st, 0, mixed...)
	cfg := config(st)
	cfg.MaxBulk = 3
	c := serve(t, cfg)
	c.login()
	status, body := c.get("outboxes/orders/dead/confirm?op=requeue")
	wantStatus(t, "confirm over MaxBulk", status, http.StatusBadRequest, body)
	if !strings.Contains(body, "more than 3 dead letters match") {
		t.Errorf("the refusal does not say why:\n%s", body)
	}
	status, v := c.api("api/outboxes/orders/dead/requeue", `{"all":true}`, token)
	wantStatus(t, "api over MaxBulk", status, http.StatusBadRequest, v)
	status, v = c.api("api/outboxes/orders/dead/requeue", `{"type":"ORDER_PAID"}`, token)
	if status != http.StatusOK || v["requeued"] != 2.0 {
		t.Errorf("api under MaxBulk = %d %v", status, v)
	}
}

// TestLinksRelative follows every link of the pages from the root: under a prefix each must
// stay under it and answer 200.
func TestLinksRelative(t *testing.T) {
	st := memory.New()
	seedMemory(t, st, 1, mixed...)
	c := serve(t, config(st))
	c.login()
	href := regexpHref
	seen := map[string]bool{}
	queue := []string{c.base.String()}
	for len(queue) > 0 && len(seen) < 60 {
		page := queue[0]
		queue = queue[1:]
		if seen[page] {
			continue
		}
		seen[page] = true
		req, _ := http.NewRequest(http.MethodGet, page, nil)
		status, body := c.do(req)
		if status != http.StatusOK {
			t.Errorf("%s: %d", page, status)
			continue
		}
		if !strings.Contains(page, "/api/") && !strings.Contains(page, ".css") && !strings.Contains(body, "</html>") {
			t.Errorf("%s: not a whole page", page)
		}
		base, _ := url.Parse(page)
		for _, m := range href.FindAllStringSubmatch(body, -1) {
			link := htmlUnescape(m[1])
			if strings.HasPrefix(link, "/") || strings.Contains(link, "://") {
				t.Errorf("%s links to %q: not relative", page, link)
				continue
			}
			u, err := base.Parse(link)
			if err != nil {
				t.Errorf("%s: bad link %q", page, link)
				continue
			}
			if !strings.HasPrefix(u.Path, prefix) {
				t.Errorf("%s: link %q leaves the prefix (%s)", page, link, u.Path)
				continue
			}
			if !strings.Contains(u.RawQuery, "op=purge") && !strings.Contains(u.Path, "/login") {
				queue = append(queue, u.String())
			}
		}
	}
	if len(seen) < 8 {
		t.Errorf("followed only %d links", len(seen))
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	st := memory.New()
	seedMemory(t, st, 0, mixed...)
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := config(st)
	cfg.Logger = zap.New(core)
	c := serve(t, cfg)
	c.post("login", url.Values{"token": {"wrong-" + token}})
	c.login()
	status, body := confirmAndPost(t, c, "requeue", "type=ORDER_PLACED", 2)
	wantStatus(t, "requeue", status, http.StatusOK, body)
	c.api("api/outboxes/orders/dead/purge", `{"type":"ORDER_PAID"}`, token)
	c.get("outboxes/orders/dead/" + "0190a000-0000-7000-8000-000000000000?payload=1")

	var all strings.Builder
	var changes int
	for _, e := range logs.All() {
		all.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			all.WriteString(" " + k + "=" + toString(v))
		}
		all.WriteString("\n")
		if strings.HasPrefix(e.Message, "dead letters ") {
			changes++
		}
	}
	if changes != 2 {
		t.Errorf("%d mutations logged, want 2:\n%s", changes, all.String())
	}
	for _, secret := range []string{token, payloadMarker} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("the logs hold %q:\n%s", secret, all.String())
		}
	}
	if h, _ := console.New(cfg); strings.Contains(sprint(h), token) {
		t.Error("the handler prints the token")
	}
}

func TestConfigValidate(t *testing.T) {
	st := memory.New()
	ok := console.Outbox{Name: "orders", Store: st}
	for _, tc := range []struct {
		name string
		cfg  console.Config
		want string // "" for valid
	}{
		{"valid", console.Config{Outboxes: []console.Outbox{ok}, Token: token}, ""},
		{"read-only without token", console.Config{Outboxes: []console.Outbox{ok}, ReadOnly: true}, ""},
		{"no outboxes", console.Config{Token: token}, "Outboxes is empty"},
		{"no token", console.Config{Outboxes: []console.Outbox{ok}}, "Token is shorter"},
		{"short token", console.Config{Outboxes: []console.Outbox{ok}, Token: "short"}, "Token is shorter"},
		{"bad name", console.Config{Outboxes: []console.Outbox{{Name: "a/b", Store: st}}, Token: token}, "Name"},
		{"empty name", console.Config{Outboxes: []console.Outbox{{Store: st}}, Token: token}, "Name"},
		{"twice", console.Config{Outboxes: []console.Outbox{ok, ok}, Token: token}, "listed twice"},
		{"nil store", console.Config{Outboxes: []console.Outbox{{Name: "x"}}, Token: token}, "Store is nil"},
		{"not an inspector", console.Config{Outboxes: []console.Outbox{{Name: "x", Store: claimOnly{st}}}, Token: token}, "Inspector"},
		{"negative page", console.Config{Outboxes: []console.Outbox{ok}, Token: token, PageSize: -1}, "PageSize"},
	} {
		_, err := console.New(tc.cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), token):
			t.Errorf("%s: the error shows the token", tc.name)
		}
	}
}

// claimOnly is a store that is not an Inspector.
type claimOnly struct{ outbox.Store }

// failing is a store whose inspection fails.
type failing struct{ *memory.Store }

func (failing) Counts(context.Context) (outbox.Counts, error) {
	return outbox.Counts{}, errors.New("failing: counts: connection refused")
}

func (failing) ListDead(context.Context, outbox.DeadFilter) ([]outbox.DeadLetter, error) {
	return nil, errors.New("failing: list dead: connection refused")
}

func TestStoreFailureShown(t *testing.T) {
	st := memory.New()
	seedMemory(t, st, 1, mixed...)
	c := serve(t, console.Config{Token: token, Outboxes: []console.Outbox{
		{Name: "down", Store: failing{memory.New()}}, {Name: "up", Store: st}}})
	status, body := c.get("")
	wantStatus(t, "overview", status, http.StatusOK, body)
	if !strings.Contains(body, "the store failed: failing: counts: connection refused") || !strings.Contains(body, `data-dead="4"`) {
		t.Errorf("overview with one store down:\n%s", body)
	}
	status, v := c.getJSON("api/outboxes")
	wantStatus(t, "api", status, http.StatusOK, v)
	if down := v["outboxes"].([]any)[0].(map[string]any); down["error"] == nil {
		t.Errorf("api shows no error for the failing store: %v", down)
	}
	status, body = c.get("outboxes/down/dead")
	wantStatus(t, "dead list", status, http.StatusBadGateway, body)
	status, v = c.api("api/outboxes/down/dead/purge", `{"all":true}`, token)
	wantStatus(t, "api purge", status, http.StatusBadGateway, v)
}

// Under "Referrer-Policy: no-referrer" a browser posts the console's own forms with
// "Origin: null", which the CSRF check refuses: no login would get through (the browser test
// found it). same-origin still sends nothing to another site.
func TestReferrerPolicyKeepsTheFormsOrigin(t *testing.T) {
	c := serve(t, config(memory.New()))
	resp, err := c.http.Get(c.url(""))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if got := resp.Header.Get("Referrer-Policy"); got != "same-origin" {
		t.Fatalf("Referrer-Policy: %q, want same-origin", got)
	}
	// A post that says "Origin: null" (a sandboxed frame, or a page under no-referrer) is refused.
	status, body := c.post("login", url.Values{"token": {token}}, "Origin", "null")
	wantStatus(t, "login with Origin: null", status, http.StatusForbidden, body)
}
