package main

import (
	"io"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapISOTime writes log times as RFC 3339 with milliseconds in UTC, readable by people and by
// every log pipeline.
func zapISOTime(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// zapcoreFor builds a JSON core of cfg writing to w, which may be a test's buffer rather than
// the real stderr that zap.Config.Build would open.
func zapcoreFor(cfg zap.Config, w io.Writer) zapcore.Core {
	return zapcore.NewCore(zapcore.NewJSONEncoder(cfg.EncoderConfig), zapcore.AddSync(w), cfg.Level)
}
