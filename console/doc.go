// Package console is the outbox's operator console and admin JSON API: an http.Handler that
// shows one or several outboxes (pending, dead, the oldest pending age) and repairs their dead
// letters (list, filter, requeue, purge), built only on the root package's Store and Inspector.
//
// It mounts under any path prefix in the service's own mux: every link it renders is relative.
//
//	mux.Handle("/outbox/", http.StripPrefix("/outbox", h))
//
// Pages are server-rendered (html/template, assets embedded, no JavaScript). Reading needs
// nothing; every mutation needs Config.Token (a login page sets a session cookie for forms,
// which also carry a CSRF token; the API takes "Authorization: Bearer TOKEN"), and
// Config.ReadOnly refuses them all. docs/console.md describes the pages, the API and the
// security model. Read config.go first, then console.go.
package console
