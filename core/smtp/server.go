package smtp

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
)

// Spool is where the server puts accepted messages (core/queue implements
// it; `gateway sink` has one that counts).
type Spool interface {
	Create(ctx context.Context) (Draft, error)
}

// Draft is one message being received. The server writes the content
// (CRLF line endings, dot-unstuffed) and then either commits or aborts.
type Draft interface {
	ID() string // queue ID, known from Create on (used in the Received header)
	io.Writer
	// Commit stores env, header (trace and hook header fields, prepended to
	// the content) and the content durably: when it returns nil, the
	// message survives a crash (fsync'd). Only then does the server say 250.
	Commit(ctx context.Context, env *envelope.Envelope, header []byte) error
	// Abort discards the draft; safe after a failed Commit and twice.
	Abort() error
}

// Authenticator checks AUTH PLAIN/LOGIN credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, user, pass string) (bool, error)
}

// Options configure a Server.
type Options struct {
	Hostname string
	Listener config.Listener // limits, timeouts, auth_required, bare line endings

	LocalDomains       []string       // recipients here are accepted from anyone
	RelayNetworks      []netip.Prefix // clients here may relay anywhere
	RelayAuthenticated bool           // authenticated clients may relay

	TLS   *tls.Config   // nil: no STARTTLS
	Auth  Authenticator // nil: no AUTH offered
	Hooks hook.Dispatcher
	Spool Spool
	Log   *slog.Logger
}

// Server serves SMTP on listeners. Create it with NewServer.
type Server struct {
	opt Options
}

// NewServer checks opt and returns a server.
func NewServer(opt Options) (*Server, error) { panic("todo") }

// Serve accepts connections on ln until Shutdown or Close; it returns
// net.ErrClosed after a shutdown. Each session runs in a goroutine owned by
// the server.
func (s *Server) Serve(ln net.Listener) error { panic("todo") }

// Shutdown stops accepting, lets sessions finish, and when ctx is done
// answers each remaining session's next command with 421 4.3.2 and closes it
// (sessions waiting for a command are closed at once with that reply). It
// returns when every session has ended.
func (s *Server) Shutdown(ctx context.Context) error { panic("todo") }
