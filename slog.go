package outbox

import (
	"context"
	"log/slog"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SlogLogger returns a *zap.Logger that writes every entry to l's handler, for services that log
// with log/slog: every Logger field of this repository's configs accepts it, as in
// outbox.Config{Logger: outbox.SlogLogger(slog.Default())}. Levels map onto slog's (zap's
// Warn to slog.LevelWarn, DPanic and above to slog.LevelError), fields become attributes in
// their order, a named logger's name is the attribute "logger". A nil l is slog.Default().
func SlogLogger(l *slog.Logger) *zap.Logger {
	if l == nil {
		l = slog.Default()
	}
	return zap.New(slogCore{h: l.Handler()})
}

// slogCore is a zapcore.Core over a slog.Handler.
type slogCore struct {
	h slog.Handler
}

func (c slogCore) Enabled(level zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(level))
}

func (c slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{h: c.h.WithAttrs(slogAttrs(fields))}
}

func (c slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, e.Caller.PC)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(slogAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// slogAttrs turns zap fields into attributes, in order. A field encodes itself into a map (an
// error as its message under the field's key, plus a verbose form for some errors).
func slogAttrs(fields []zapcore.Field) []slog.Attr {
	attrs := make([]slog.Attr, 0, len(fields))
	for _, f := range fields {
		enc := zapcore.NewMapObjectEncoder()
		f.AddTo(enc)
		if v, ok := enc.Fields[f.Key]; ok {
			attrs = append(attrs, slog.Any(f.Key, v))
		}
		for k, v := range enc.Fields {
			if k != f.Key {
				attrs = append(attrs, slog.Any(k, v))
			}
		}
	}
	return attrs
}
