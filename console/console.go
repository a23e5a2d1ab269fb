package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/txoutbox/outbox"
)

//go:embed templates/*.html static/*
var assets embed.FS

// storeTimeout bounds every store call of one request.
const storeTimeout = 30 * time.Second

// maxFormBytes bounds a request body (a form or the API's JSON).
const maxFormBytes = 64 << 10

type handler struct {
	cfg      Config
	outboxes map[string]outbox.Inspector
	names    []string
	auth     *auth
	log      *zap.Logger
	pages    map[string]*template.Template
	css      []byte
	mux      *http.ServeMux
}

// New returns the console's handler. It validates cfg. The handler serves the pages at "/" and
// the API at "/api/": mount it under a prefix with http.StripPrefix (every link is relative).
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	h := &handler{
		cfg:      cfg,
		outboxes: map[string]outbox.Inspector{},
		log:      cfg.Logger.Named("outbox.console"),
		pages:    map[string]*template.Template{},
		mux:      http.NewServeMux(),
	}
	if !cfg.ReadOnly {
		h.auth = newAuth(cfg.Token.Reveal(), cfg.SessionTTL)
	}
	h.cfg.Token = "" // auth keeps only hashes of it
	for _, o := range cfg.Outboxes {
		h.outboxes[o.Name] = o.Store.(outbox.Inspector)
		h.names = append(h.names, o.Name)
	}
	for _, p := range []string{"overview", "dead", "detail", "confirm", "done", "login", "error"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", p, err)
		}
		h.pages[p] = t
	}
	css, err := fs.ReadFile(assets, "static/console.css")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	h.css = css
	h.routes()
	return h, nil
}

// Format prints the handler as its outboxes' names, under every verb: it never lists its fields.
func (h *handler) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprintf(f, "console.Handler%v", h.names)
}

func (h *handler) routes() {
	m := h.mux
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /static/console.css", h.static)
	m.HandleFunc("GET /login", h.loginPage)
	m.HandleFunc("POST /login", h.login)
	m.HandleFunc("POST /logout", h.form(h.logout))
	m.HandleFunc("GET /outboxes/{name}/dead", h.deadList)
	m.HandleFunc("GET /outboxes/{name}/dead/confirm", h.confirm)
	m.HandleFunc("GET /outboxes/{name}/dead/{id}", h.detail)
	m.HandleFunc("POST /outboxes/{name}/dead/{op}", h.form(h.bulk))
	m.HandleFunc("/", h.notFound)

	m.HandleFunc("GET /api/outboxes", h.apiOutboxes)
	m.HandleFunc("GET /api/outboxes/{name}", h.apiOutbox)
	m.HandleFunc("GET /api/outboxes/{name}/dead", h.apiDeadList)
	m.HandleFunc("GET /api/outboxes/{name}/dead/{id}", h.apiDeadOne)
	m.HandleFunc("POST /api/outboxes/{name}/dead/{op}", h.api(h.apiBulk))
	m.HandleFunc("/api/", h.apiNotFound)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Robots-Tag", "noindex, nofollow")
	// Nothing reaches another site (a page's address holds its filter), but not no-referrer:
	// under it a browser sends "Origin: null" with the console's own form posts, which the CSRF
	// check must refuse, so no login or confirm would get through.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.mux.ServeHTTP(w, r)
}

// root is the relative path from the request's page to the console's root ("./", "../", ...),
// which every link starts with, so the console works under any prefix.
func root(r *http.Request) string {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	if n := strings.Count(p, "/"); n > 0 {
		return strings.Repeat("../", n)
	}
	return "./"
}

func (h *handler) static(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	_, _ = w.Write(h.css)
}

// inspector returns the named outbox's inspector, or nil.
func (h *handler) inspector(r *http.Request) (string, outbox.Inspector) {
	name := r.PathValue("name")
	return name, h.outboxes[name]
}

func storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}

// statusOf maps an error to the status it is answered with.
func statusOf(err error) int {
	var tooMany errTooMany
	switch {
	case errors.Is(err, errBadInput), errors.As(err, &tooMany):
		return http.StatusBadRequest
	case errors.Is(err, outbox.ErrInvalidArgument), errors.Is(err, outbox.ErrInvalidConfig):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// storeFailed logs a store error (its text names no payload) and returns the status to answer.
func (h *handler) storeFailed(r *http.Request, outboxName, what string, err error) int {
	status := statusOf(err)
	if status >= 500 {
		h.log.Warn("store failed", zap.String("outbox", outboxName), zap.String("op", what), zap.Error(err))
	}
	return status
}
