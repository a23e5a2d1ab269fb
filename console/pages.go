package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
)

// page is what every template gets; Data is the page's own.
type page struct {
	Root     string
	Title    string
	ReadOnly bool
	LoggedIn bool
	CSRF     string
	Data     any
}

var funcs = template.FuncMap{
	"age": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return humanDuration(time.Since(t))
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"trunc": truncate,
	"path":  url.PathEscape,
}

func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

func (h *handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := page{Root: root(r), Title: title, ReadOnly: h.cfg.ReadOnly, Data: data}
	if h.auth != nil {
		if s := h.auth.session(r); s != "" {
			p.LoggedIn, p.CSRF = true, h.auth.csrf(s)
		}
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.Error("render", zap.String("page", name), zap.Error(err))
		http.Error(w, "console: the page failed to render", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage answers with a page that says what went wrong and that nothing changed.
type errorPage struct {
	Status  int
	Message string
	Back    string // a link relative to the root, or ""
	Login   bool   // offer the login page
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, msg, back string) {
	h.render(w, r, status, "error", http.StatusText(status), errorPage{Status: status, Message: msg, Back: back,
		Login: status == http.StatusUnauthorized})
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.fail(w, r, http.StatusNotFound, "There is no such page.", "")
}

func (h *handler) unknownOutbox(w http.ResponseWriter, r *http.Request, name string) {
	h.fail(w, r, http.StatusNotFound, fmt.Sprintf("There is no outbox named %q.", truncate(name, 64)), "")
}

type overviewRow struct {
	Name   string
	Counts outbox.Counts
	Err    string
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := storeCtx(r)
	defer cancel()
	rows := make([]overviewRow, 0, len(h.names))
	for _, name := range h.names {
		c, err := h.outboxes[name].Counts(ctx)
		row := overviewRow{Name: name, Counts: c}
		if err != nil {
			h.storeFailed(r, name, "counts", err)
			row.Err = err.Error()
		}
		rows = append(rows, row)
	}
	h.render(w, r, http.StatusOK, "overview", "Outboxes", rows)
}

type deadListPage struct {
	Outbox  string
	Filter  filter
	Query   template.URL // the filter as a query string
	Letters []outbox.DeadLetter
	More    bool
	Limit   int
}

func (h *handler) deadList(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		h.unknownOutbox(w, r, name)
		return
	}
	f, err := filterFromQuery(r.URL.Query())
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error(), "outboxes/"+url.PathEscape(name)+"/dead")
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	found, more, err := find(ctx, insp, f, h.cfg.PageSize, h.cfg.MaxBulk)
	if err != nil {
		h.fail(w, r, h.storeFailed(r, name, "list dead", err), "The store failed: "+err.Error(), "")
		return
	}
	h.render(w, r, http.StatusOK, "dead", "Dead letters · "+name, deadListPage{
		Outbox: name, Filter: f, Query: template.URL(f.query().Encode()), Letters: found, More: more, Limit: h.cfg.PageSize})
}

type detailPage struct {
	Outbox       string
	Letter       outbox.DeadLetter
	Query        template.URL
	HidePayloads bool
	Reveal       bool
	Payload      string
	Result       string
}

// lookup finds one dead letter by the {id} path value, answering the request when it cannot.
func (h *handler) lookup(w http.ResponseWriter, r *http.Request, insp outbox.Inspector, name string, page bool) (outbox.DeadLetter, bool) {
	id := r.PathValue("id")
	fail := func(status int, msg string) {
		if page {
			h.fail(w, r, status, msg, "outboxes/"+url.PathEscape(name)+"/dead")
		} else {
			writeError(w, status, msg)
		}
	}
	if _, err := uuid.Parse(id); err != nil {
		fail(http.StatusBadRequest, fmt.Sprintf("%q is not a message ID (a UUID).", truncate(id, 40)))
		return outbox.DeadLetter{}, false
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	found, err := insp.ListDead(ctx, outbox.DeadFilter{IDs: []string{id}, Limit: 1})
	if err != nil {
		fail(h.storeFailed(r, name, "list dead", err), "The store failed: "+err.Error())
		return outbox.DeadLetter{}, false
	}
	if len(found) == 0 {
		fail(http.StatusNotFound, fmt.Sprintf("Outbox %q has no dead letter %s (it may have been requeued or purged).", name, id))
		return outbox.DeadLetter{}, false
	}
	return found[0], true
}

func (h *handler) detail(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		h.unknownOutbox(w, r, name)
		return
	}
	d, ok := h.lookup(w, r, insp, name, true)
	if !ok {
		return
	}
	p := detailPage{Outbox: name, Letter: d, HidePayloads: h.cfg.HidePayloads,
		Query: template.URL((filter{IDs: []string{d.ID}}).query().Encode())}
	if !h.cfg.HidePayloads && r.URL.Query().Get("payload") == "1" {
		p.Reveal, p.Payload, p.Result = true, pretty(d.Payload), pretty(d.Result)
	}
	// Neither the payload nor the result leaves the handler in any other field.
	p.Letter.Payload, p.Letter.Result = nil, nil
	h.render(w, r, http.StatusOK, "detail", "Dead letter "+d.ID, p)
}

// pretty indents stored JSON, or shows it as it is when it is not valid (which may be why the
// message died).
func pretty(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		return string(raw)
	}
	return buf.String()
}

type confirmPage struct {
	Outbox string
	Op     op
	Filter filter
	Query  template.URL
	Count  int
	Digest string
	Stale  bool // the confirm shown again because the earlier one was stale
	Was    int
}

// confirm counts what a bulk action would touch and asks for a confirm that carries the count.
func (h *handler) confirm(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		h.unknownOutbox(w, r, name)
		return
	}
	back := "outboxes/" + url.PathEscape(name) + "/dead"
	q := r.URL.Query()
	o, ok := parseOp(q.Get("op"))
	if !ok {
		h.fail(w, r, http.StatusBadRequest, "The action must be requeue or purge.", back)
		return
	}
	f, err := filterFromQuery(q)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error(), back)
		return
	}
	if h.cfg.ReadOnly {
		h.fail(w, r, http.StatusForbidden, "The console is read-only: nothing can be changed here.", back)
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	sel, err := selectDead(ctx, insp, f, h.cfg.MaxBulk)
	if err != nil {
		h.fail(w, r, h.storeFailed(r, name, "select dead", err), err.Error(), back+"?"+f.query().Encode())
		return
	}
	h.render(w, r, http.StatusOK, "confirm", "Confirm "+string(o), confirmPage{
		Outbox: name, Op: o, Filter: f, Query: template.URL(f.query().Encode()), Count: len(sel.IDs), Digest: sel.Digest})
}

type donePage struct {
	Outbox string
	Op     op
	Past   string
	N      int
	Query  template.URL
}

// form guards a form post: not read-only, logged in, same origin, a valid CSRF token.
func (h *handler) form(next func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.ReadOnly {
			h.fail(w, r, http.StatusForbidden, "The console is read-only: nothing was changed.", "")
			return
		}
		session := h.auth.session(r)
		if session == "" {
			h.fail(w, r, http.StatusUnauthorized, "Log in with the console's token first: nothing was changed.", "")
			return
		}
		if !sameOrigin(r) {
			h.fail(w, r, http.StatusForbidden, "The form was sent from another site: nothing was changed.", "")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			h.fail(w, r, http.StatusBadRequest, "The form could not be read: nothing was changed.", "")
			return
		}
		if !h.auth.checkCSRF(session, r.PostForm.Get("csrf")) {
			h.fail(w, r, http.StatusForbidden, "The form's CSRF token is missing or wrong (reload the page and try again): nothing was changed.", "")
			return
		}
		next(w, r, session)
	}
}

// bulk runs a confirmed requeue or purge, refusing a stale confirm.
func (h *handler) bulk(w http.ResponseWriter, r *http.Request, _ string) {
	name, insp := h.inspector(r)
	if insp == nil {
		h.unknownOutbox(w, r, name)
		return
	}
	back := "outboxes/" + url.PathEscape(name) + "/dead"
	o, ok := parseOp(r.PathValue("op"))
	if !ok {
		h.notFound(w, r)
		return
	}
	f, err := filterFromQuery(r.PostForm)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err.Error()+": nothing was changed.", back)
		return
	}
	want, err := strconv.Atoi(r.PostForm.Get("count"))
	if err != nil || want < 0 {
		h.fail(w, r, http.StatusBadRequest, "The confirm carries no count: open the action from the dead letters page. Nothing was changed.", back)
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	sel, err := selectDead(ctx, insp, f, h.cfg.MaxBulk)
	if err != nil {
		h.fail(w, r, h.storeFailed(r, name, "select dead", err), err.Error()+" Nothing was changed.", back)
		return
	}
	if len(sel.IDs) != want || sel.Digest != r.PostForm.Get("digest") {
		h.render(w, r, http.StatusConflict, "confirm", "Stale confirm", confirmPage{
			Outbox: name, Op: o, Filter: f, Query: template.URL(f.query().Encode()), Count: len(sel.IDs), Digest: sel.Digest,
			Stale: true, Was: want})
		return
	}
	n, err := apply(ctx, insp, o, f, sel)
	h.logBulk(r, name, o, f, len(sel.IDs), n, err)
	if err != nil {
		h.fail(w, r, h.storeFailed(r, name, string(o), err), fmt.Sprintf("The store failed after %d were %s: %v", n, o.past(), err), back)
		return
	}
	h.render(w, r, http.StatusOK, "done", "Done", donePage{Outbox: name, Op: o, Past: o.past(), N: n, Query: template.URL(f.query().Encode())})
}

// logBulk records a mutation: the outbox, the filter's type and key and whether it had IDs or
// an error substring, how many. Never a payload or the token.
func (h *handler) logBulk(r *http.Request, name string, o op, f filter, selected, n int, err error) {
	fields := []zap.Field{zap.String("outbox", name), zap.String("op", string(o)),
		zap.String("type", f.Type), zap.String("key", f.Key), zap.Int("ids", len(f.IDs)),
		zap.Bool("error_filter", f.Error != ""), zap.Int("selected", selected), zap.Int("changed", n),
		zap.String("remote", r.RemoteAddr)}
	if err != nil {
		h.log.Warn("dead letters "+o.past()+" in part", append(fields, zap.Error(err))...)
		return
	}
	h.log.Info("dead letters "+o.past(), fields...)
}

type loginPage struct{ Failed bool }

func (h *handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if h.cfg.ReadOnly {
		h.fail(w, r, http.StatusForbidden, "The console is read-only: there is nothing to log in for.", "")
		return
	}
	h.render(w, r, http.StatusOK, "login", "Log in", loginPage{})
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	if h.cfg.ReadOnly {
		h.fail(w, r, http.StatusForbidden, "The console is read-only: there is nothing to log in for.", "")
		return
	}
	if !sameOrigin(r) {
		h.fail(w, r, http.StatusForbidden, "The form was sent from another site.", "")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || !h.auth.checkToken(r.PostForm.Get("token")) {
		h.log.Info("login refused", zap.String("remote", r.RemoteAddr))
		h.render(w, r, http.StatusUnauthorized, "login", "Log in", loginPage{Failed: true})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: h.auth.newSession(), MaxAge: int(h.cfg.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	h.log.Info("login", zap.String("remote", r.RemoteAddr))
	seeOther(w, "./")
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request, _ string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	seeOther(w, "./")
}

// seeOther redirects to a location relative to the request's URL as the browser sees it
// (http.Redirect would resolve it against the path left by http.StripPrefix).
func seeOther(w http.ResponseWriter, location string) {
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusSeeOther)
}
