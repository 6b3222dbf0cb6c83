package smtp

import (
	"context"
	"net"
)

// Listen opens a TCP listener for an SMTP server at address. It turns off
// TCP keep-alive on the connections it accepts, which Go's default
// listener sets up with four setsockopt calls per connection: a session
// has its own command and data timeouts, and most sessions (one message
// from an MX) last a few milliseconds.
func Listen(ctx context.Context, address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", address)
}
