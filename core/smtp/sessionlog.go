package smtp

import (
	"context"
	"log/slog"
	"net/netip"
)

// sessionLog is the handler of a session's logger: the server's, adding
// the session's ID and client address to each record it writes. The
// logger slog.Logger.With makes formats them up front instead, for every
// session, though at the levels an MX runs at most sessions write nothing.
type sessionLog struct {
	slog.Handler // the server's
	id           string
	ip           netip.Addr
}

// newSessionLogger returns the logger of session id from ip.
func newSessionLogger(server *slog.Logger, id string, ip netip.Addr) *slog.Logger {
	return slog.New(&sessionLog{Handler: server.Handler(), id: id, ip: ip})
}

func (h *sessionLog) attrs() []slog.Attr {
	return []slog.Attr{slog.String("session", h.id), slog.String("ip", h.ip.String())}
}

// Handle writes r with the session's attributes before its own, where
// With would have put them.
func (h *sessionLog) Handle(ctx context.Context, r slog.Record) error {
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(h.attrs()...)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

// WithAttrs and WithGroup hand on to the server's handler with the
// session's attributes added, as With would have.
func (h *sessionLog) WithAttrs(as []slog.Attr) slog.Handler {
	return h.Handler.WithAttrs(h.attrs()).WithAttrs(as)
}

func (h *sessionLog) WithGroup(name string) slog.Handler {
	return h.Handler.WithAttrs(h.attrs()).WithGroup(name)
}
