package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/txoutbox/outbox"
)

// outboxJSON is one outbox in the API.
type outboxJSON struct {
	Name          string     `json:"name"`
	Pending       int64      `json:"pending"`
	Delivered     int64      `json:"delivered"`
	Dead          int64      `json:"dead"`
	OldestPending *time.Time `json:"oldest_pending,omitempty"`
	// OldestPendingAge is in seconds; zero when nothing is pending.
	OldestPendingAge float64 `json:"oldest_pending_age_seconds"`
	Error            string  `json:"error,omitempty"`
}

// deadJSON is one dead letter in the API, the same fields as `outbox dead list --json`.
type deadJSON struct {
	ID        string            `json:"id"`
	Type      string            `json:"type"`
	Key       string            `json:"key,omitempty"`
	Payload   rawJSON           `json:"payload,omitempty"`
	Result    rawJSON           `json:"result,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	CreatedAt time.Time         `json:"created_at"`
	Attempts  int               `json:"attempts"`
	LastError string            `json:"last_error"`
	DiedAt    time.Time         `json:"died_at"`
}

// rawJSON embeds stored JSON as is, or as a string when it is corrupt.
type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	if !json.Valid(r) {
		return json.Marshal(string(r))
	}
	return r, nil
}

func (h *handler) deadJSON(d outbox.DeadLetter) deadJSON {
	j := deadJSON{ID: d.ID, Type: d.Type, Key: d.Key, Headers: d.Headers, CreatedAt: d.CreatedAt,
		Attempts: d.Attempts, LastError: d.LastError, DiedAt: d.DiedAt}
	if !h.cfg.HidePayloads {
		j.Payload, j.Result = rawJSON(d.Payload), rawJSON(d.Result)
	}
	return j
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (h *handler) apiNotFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "no such API endpoint")
}

func (h *handler) counts(r *http.Request, name string) outboxJSON {
	ctx, cancel := storeCtx(r)
	defer cancel()
	c, err := h.outboxes[name].Counts(ctx)
	j := outboxJSON{Name: name, Pending: c.Pending, Delivered: c.Delivered, Dead: c.Dead}
	if err != nil {
		h.storeFailed(r, name, "counts", err)
		j.Error = err.Error()
		return j
	}
	if !c.OldestPending.IsZero() {
		t := c.OldestPending.UTC()
		j.OldestPending = &t
		j.OldestPendingAge = max(0, time.Since(t).Seconds())
	}
	return j
}

func (h *handler) apiOutboxes(w http.ResponseWriter, r *http.Request) {
	out := make([]outboxJSON, 0, len(h.names))
	for _, name := range h.names {
		out = append(out, h.counts(r, name))
	}
	writeJSON(w, http.StatusOK, map[string]any{"outboxes": out})
}

func (h *handler) apiOutbox(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no outbox named %q", truncate(name, 64)))
		return
	}
	writeJSON(w, http.StatusOK, h.counts(r, name))
}

func (h *handler) apiDeadList(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no outbox named %q", truncate(name, 64)))
		return
	}
	q := r.URL.Query()
	f, err := filterFromQuery(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit := h.cfg.PageSize
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit <= 0 || limit > h.cfg.MaxBulk {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d", h.cfg.MaxBulk))
			return
		}
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	found, more, err := find(ctx, insp, f, limit, h.cfg.MaxBulk)
	if err != nil {
		writeError(w, h.storeFailed(r, name, "list dead", err), "the store failed: "+err.Error())
		return
	}
	out := make([]deadJSON, 0, len(found))
	for _, d := range found {
		out = append(out, h.deadJSON(d))
	}
	writeJSON(w, http.StatusOK, map[string]any{"dead": out, "more": more})
}

func (h *handler) apiDeadOne(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no outbox named %q", truncate(name, 64)))
		return
	}
	if d, ok := h.lookup(w, r, insp, name, false); ok {
		writeJSON(w, http.StatusOK, h.deadJSON(d))
	}
}

// api guards an API mutation: not read-only, the Bearer token.
func (h *handler) api(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.ReadOnly {
			writeError(w, http.StatusForbidden, "the console is read-only: nothing was changed")
			return
		}
		tok, ok := bearer(r)
		if !ok || !h.auth.checkToken(tok) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outbox console"`)
			writeError(w, http.StatusUnauthorized, "a mutation needs the header \"Authorization: Bearer TOKEN\" with the console's token: nothing was changed")
			return
		}
		next(w, r)
	}
}

// bulkRequest is the body of POST /api/outboxes/{name}/dead/requeue|purge.
type bulkRequest struct {
	filter
	// All acts on every dead letter; without it an empty filter is refused, as the CLI does.
	All bool `json:"all,omitempty"`
	// Expect, when set, refuses the action with 409 unless exactly this many match now.
	Expect *int `json:"expect,omitempty"`
}

func (h *handler) apiBulk(w http.ResponseWriter, r *http.Request) {
	name, insp := h.inspector(r)
	if insp == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no outbox named %q: nothing was changed", truncate(name, 64)))
		return
	}
	o, ok := parseOp(r.PathValue("op"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such API endpoint: want dead/requeue or dead/purge")
		return
	}
	req, err := decodeBulk(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error()+": nothing was changed")
		return
	}
	if req.empty() && !req.All {
		writeError(w, http.StatusBadRequest, `no filter: give ids, type, key or error, or "all": true for every dead letter; nothing was changed`)
		return
	}
	ctx, cancel := storeCtx(r)
	defer cancel()
	sel, err := selectDead(ctx, insp, req.filter, h.cfg.MaxBulk)
	if err != nil {
		writeError(w, h.storeFailed(r, name, "select dead", err), err.Error()+"; nothing was changed")
		return
	}
	if req.Expect != nil && *req.Expect != len(sel.IDs) {
		writeJSON(w, http.StatusConflict, map[string]any{
			"error":   fmt.Sprintf("%d dead letters match now, not the %d expected: nothing was changed", len(sel.IDs), *req.Expect),
			"matched": len(sel.IDs)})
		return
	}
	n, err := apply(ctx, insp, o, req.filter, sel)
	h.logBulk(r, name, o, req.filter, len(sel.IDs), n, err)
	if err != nil {
		writeJSON(w, h.storeFailed(r, name, string(o), err), map[string]any{
			"error": "the store failed: " + err.Error(), o.past(): n})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{o.past(): n, "matched": len(sel.IDs)})
}

func decodeBulk(w http.ResponseWriter, r *http.Request) (bulkRequest, error) {
	var req bulkRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, badInput("the body is larger than %d bytes", maxFormBytes)
		}
		if errors.Is(err, io.EOF) {
			return req, badInput("the body is empty: want a JSON filter")
		}
		return req, badInput("the body is not a JSON filter: %v", err)
	}
	if dec.More() {
		return req, badInput("the body holds more than one JSON value")
	}
	return req, req.check()
}
