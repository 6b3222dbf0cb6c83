package pluginhost

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hcLogger is the hclog.Logger go-plugin requires, writing to slog: the
// plugin's own log lines (which go-plugin parses from its stderr) and
// go-plugin's messages about the process, with the plugin's attributes.
type hcLogger struct {
	log  *slog.Logger
	name string
	args []any // implied arguments (With)
}

var _ hclog.Logger = (*hcLogger)(nil)

func newHCLogger(l *slog.Logger) hclog.Logger { return &hcLogger{log: l} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo // Info, NoLevel, Off
}

func (l *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	lvl := slogLevel(level)
	if msg == "plugin process exited" && lvl > slog.LevelInfo {
		// go-plugin says so at error for any non-zero exit, including our
		// own kill; the supervisor logs a crash with its reason.
		lvl = slog.LevelInfo
	}
	ctx := context.Background() // logging only: no deadline to carry
	if !l.log.Enabled(ctx, lvl) {
		return
	}
	all := make([]any, 0, len(l.args)+len(args)+2)
	if l.name != "" {
		all = append(all, "logger", l.name)
	}
	all = append(all, l.args...)
	all = append(all, args...)
	if len(all)%2 == 1 { // hclog allows a dangling value; slog would print !BADKEY
		all = append(all[:len(all)-1], "extra", all[len(all)-1])
	}
	l.log.Log(ctx, lvl, oneLine(msg), all...)
}

func (l *hcLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *hcLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *hcLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *hcLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *hcLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *hcLogger) enabled(level hclog.Level) bool {
	return l.log.Enabled(context.Background(), slogLevel(level))
}

func (l *hcLogger) IsTrace() bool { return l.enabled(hclog.Trace) }
func (l *hcLogger) IsDebug() bool { return l.enabled(hclog.Debug) }
func (l *hcLogger) IsInfo() bool  { return l.enabled(hclog.Info) }
func (l *hcLogger) IsWarn() bool  { return l.enabled(hclog.Warn) }
func (l *hcLogger) IsError() bool { return l.enabled(hclog.Error) }

func (l *hcLogger) ImpliedArgs() []any { return append([]any(nil), l.args...) }

func (l *hcLogger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), args...)
	return &c
}

func (l *hcLogger) Name() string { return l.name }

func (l *hcLogger) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (l *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler decides.
func (l *hcLogger) SetLevel(hclog.Level) {}

// GetLevel returns the lowest level the slog handler takes.
func (l *hcLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (l *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &lineLogger{log: l.log, msg: "plugin log", attrs: []any{"logger", l.name}}
}

// lineLogger logs each line written to it at info, as attribute "line"
// of a record with message msg: a plugin's stdout and stderr.
type lineLogger struct {
	log   *slog.Logger
	msg   string
	attrs []any

	mu      sync.Mutex
	partial []byte
}

// maxLine bounds a line kept waiting for its newline.
const maxLine = 16 << 10

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) >= maxLine {
				w.emit(w.partial)
				w.partial = w.partial[:0]
			}
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			line = append(w.partial, line...)
			w.partial = w.partial[:0]
		}
		w.emit(line)
		p = p[i+1:]
	}
	return n, nil
}

func (w *lineLogger) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	args := append(append([]any(nil), w.attrs...), "line", oneLine(string(line)))
	w.log.Info(w.msg, args...)
}
