package smtp

import (
	"bytes"
	"log/slog"
	"net/netip"
	"testing"
)

// TestSessionLogLikeWith: a session's logger writes what the server's
// logger With the session's attributes writes, whatever is done with it.
func TestSessionLogLikeWith(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.7")
	uses := map[string]func(*slog.Logger){
		"record":     func(l *slog.Logger) { l.Info("hello", "n", 1, "s", "x y") },
		"many attrs": func(l *slog.Logger) { l.Warn("m", "a", 1, "b", 2, "c", 3, "d", 4, "e", 5, "f", 6) },
		"with":       func(l *slog.Logger) { l.With("k", "v").Info("hello", "n", 2) },
		"group":      func(l *slog.Logger) { l.WithGroup("g").Info("hello", "n", 3) },
		"disabled":   func(l *slog.Logger) { l.Debug("not written") },
	}
	for name, use := range uses {
		for _, format := range []string{"text", "json"} {
			var want, got bytes.Buffer
			use(serverLogger(&want, format).With("session", "abc123", "ip", ip.String()))
			use(newSessionLogger(serverLogger(&got, format), "abc123", ip))
			if got.String() != want.String() {
				t.Errorf("%s, %s:\ngot  %s\nwant %s", name, format, got.String(), want.String())
			}
		}
	}
}

// serverLogger is a server's logger as cmd/gateway makes one: a handler
// with the listener's name, without times so that two lines compare.
func serverLogger(w *bytes.Buffer, format string) *slog.Logger {
	opt := &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	var h slog.Handler = slog.NewTextHandler(w, opt)
	if format == "json" {
		h = slog.NewJSONHandler(w, opt)
	}
	return slog.New(h).With("listener", "mx")
}
