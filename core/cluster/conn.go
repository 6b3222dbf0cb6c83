package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailgate/gateway/core/config"
)

// Connection settings that the cluster block does not expose.
const (
	dialTimeout    = 2 * time.Second // each NATS server tried at connect
	reconnectWait  = time.Second     // between rounds of reconnect attempts
	pingInterval   = 5 * time.Second // a silent server is noticed within two of these
	defaultTimeout = 5 * time.Second // an operation whose ctx has no sooner deadline
)

// ErrUnavailable is an operation tried while the connection to NATS is
// down (it reconnects by itself); errors.Is finds it.
var ErrUnavailable = errors.New("cluster: not connected to NATS")

// Options configure a connection.
type Options struct {
	// Config is the cluster block: the node, the URLs, the credentials and
	// TLS files.
	Config config.Cluster
	// Timeout bounds every operation whose ctx has no sooner deadline
	// (and KVGet, which has no ctx); 0 = 5s.
	Timeout time.Duration
	// Now is the clock expiries are computed with; nil = time.Now.
	Now func() time.Time
	// Log receives the connection's changes of state; nil = discard.
	Log *slog.Logger
}

// Conn is this node's connection to the NATS cluster. It reconnects by
// itself, for as long as it is open; Close ends it.
type Conn struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

// Connect connects to one of opt's NATS servers and checks that JetStream
// answers. A server that cannot be reached, refuses the credentials or
// has no JetStream is an error: the caller decides whether to start
// without the cluster.
func Connect(ctx context.Context, opt Options) (*Conn, error) {
	c := &Conn{timeout: opt.Timeout, now: opt.Now, log: opt.Log}
	if c.timeout <= 0 {
		c.timeout = defaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if len(opt.Config.NATSURLs) == 0 {
		return nil, errors.New("cluster: no NATS URLs")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster: connect: %w", err)
	}
	urls := strings.Join(opt.Config.NATSURLs, ",")
	nc, err := nats.Connect(urls, c.natsOptions(opt.Config)...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to %s: %w", urls, err)
	}
	c.nc = nc
	// An asynchronous publish (a queued message's copy) whose
	// acknowledgement does not come in time fails, rather than waiting
	// in the client for ever.
	c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(c.timeout),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			c.log.Warn("cluster: an asynchronous publish failed", "subject", m.Subject, "err", err)
		}))
	if err == nil {
		actx, cancel := c.opContext(ctx)
		_, err = c.js.AccountInfo(actx)
		cancel()
	}
	if err != nil {
		url := nc.ConnectedUrlRedacted()
		nc.Close()
		return nil, fmt.Errorf("cluster: JetStream at %s: %w", url, err)
	}
	c.log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
	return c, nil
}

// natsOptions are the client's options for the cluster block b: reconnect
// for ever, buffer nothing while disconnected (a write fails at once
// rather than later), and log every change of state.
func (c *Conn) natsOptions(b config.Cluster) []nats.Option {
	opts := []nats.Option{
		nats.Name("gateway " + b.Node),
		nats.Timeout(dialTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.ReconnectBufSize(-1),
		nats.PingInterval(pingInterval),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() {
				c.log.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.log.Warn("NATS", "err", err)
		}),
	}
	if b.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(b.CredentialsFile))
	}
	if t := b.TLS; t != nil {
		opts = append(opts, nats.Secure())
		if t.CA != "" {
			opts = append(opts, nats.RootCAs(t.CA))
		}
		if t.Cert != "" {
			opts = append(opts, nats.ClientCert(t.Cert, t.Key))
		}
	}
	return opts
}

// Connected reports whether the connection is up now.
func (c *Conn) Connected() bool { return c.nc.IsConnected() }

// Close ends the connection (and its reconnecting).
func (c *Conn) Close() { c.nc.Close() }

// opContext is ctx bounded by the connection's timeout.
func (c *Conn) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// ready fails fast with ErrUnavailable while the connection is down.
func (c *Conn) ready() error {
	if s := c.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("%w (%s)", ErrUnavailable, strings.ToLower(s.String()))
	}
	return nil
}
