package rabbitmq

import (
	"net/url"

	"github.com/txoutbox/outbox/backend"
)

// redactor hides the password of an AMQP URL and every query value but those of the
// parameters amqp091-go reads that carry no secret (a key file's path is not its password).
var redactor = backend.URLRedactor{Harmless: []string{
	"heartbeat", "connection_timeout", "channel_max", "auth_mechanism",
	"server_name_indication", "certfile", "keyfile", "cacertfile",
}}

// hiddenURL stands in for a URL that does not parse: where it breaks may be inside the password.
const hiddenURL = "(unparsable URL hidden: it may hold a secret)"

// RedactURL returns an AMQP URL fit for logs: the password and every query value not known
// harmless replaced by backend.Redacted. A string that does not parse as a URL is hidden whole.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	if _, err := url.Parse(raw); err != nil {
		return hiddenURL
	}
	if out, ok := redactor.Redact(raw); ok {
		return out
	}
	return hiddenURL
}

// scrubbed is an error whose text has the config's secrets removed, for errors of the client
// library that might quote the URL; errors.Is and errors.As still see the original.
type scrubbed struct {
	err  error
	text string
}

func (e *scrubbed) Error() string { return e.text }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub removes cfg's secrets from err's text.
func scrub(cfg Connection, err error) error {
	if err == nil {
		return nil
	}
	secrets := redactor.Secrets(cfg.URL.Reveal())
	if cfg.KeyPassword != "" {
		secrets = append(secrets, cfg.KeyPassword.Reveal())
	}
	text := backend.ScrubSecrets(err.Error(), secrets)
	if text == err.Error() {
		return err
	}
	return &scrubbed{err: err, text: text}
}
