package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
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
	// defaultFormTimeout is how long Connect waits for JetStream's API to
	// answer: servers started together elect their meta leader in a few
	// seconds.
	defaultFormTimeout = 30 * time.Second
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
	// (and KVGet, which has no ctx), and how long a copy waits while the
	// servers acknowledge none of the node's copies (progress.go); 0 = 5s.
	Timeout time.Duration
	// FormTimeout bounds how long Connect waits for JetStream's API to
	// answer (a cluster just started has no meta leader for some
	// seconds); 0 = 30s.
	FormTimeout time.Duration
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

	progress *progress // on the asynchronous publishes (progress.go)
	// publishing lets one asynchronous publish at a time into the client.
	// A publish writes under the client's lock, and one whose write waits
	// for a slow link holds it: the client's read loop needs the lock to
	// answer the server's PING, and stops reading, acknowledgements
	// included, until it has it. Go's mutex hands a lock waited for over
	// a millisecond to the goroutine that waited longest: with the
	// publishes queued here instead, the read loop waits for one write,
	// not for every part the node has in flight (up to copyBudget), which
	// at a steady 2 MiB/s made copies fail for the servers' silence while
	// they stored a part every quarter of a second.
	publishing sync.Mutex

	mu       sync.Mutex
	writeErr error // the last write's (a copy's, a heartbeat's) failure; nil once one succeeds
}

// Connect connects to one of opt's NATS servers and checks that JetStream
// answers. A server that cannot be reached, refuses the credentials or
// has no JetStream is an error: the caller decides whether to start
// without the cluster.
func Connect(ctx context.Context, opt Options) (*Conn, error) {
	c := &Conn{timeout: opt.Timeout, now: opt.Now, log: opt.Log, progress: &progress{}}
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
	// The acknowledgements of asynchronous publishes (the parts of
	// queued messages' copies) are the servers' progress (progress.go);
	// the client fails one whose answer is lost after publishCeiling.
	c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishCeiling),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { c.progress.acked() }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			c.log.Warn("cluster: an asynchronous publish failed", "subject", m.Subject, "err", err)
		}))
	if err == nil {
		err = c.waitJetStream(ctx, cmp.Or(opt.FormTimeout, defaultFormTimeout))
	}
	if err != nil {
		url := nc.ConnectedUrlRedacted()
		nc.Close()
		return nil, fmt.Errorf("cluster: JetStream at %s: %w", url, err)
	}
	c.log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
	return c, nil
}

// noteWrite records the outcome of a write to JetStream that ctx, the
// caller's, asked for: one that failed while ctx was live means that
// JetStream does not take writes (no quorum, no leader), though the
// connection is up.
func (c *Conn) noteWrite(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return // the caller gave up: not JetStream's doing
	}
	c.mu.Lock()
	c.writeErr = err
	c.mu.Unlock()
}

// WriteError is the failure of the last write to JetStream, nil when it
// succeeded (or none was made yet): what /healthz reports beside the
// connection, since a node that is connected may still refuse all mail.
func (c *Conn) WriteError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeErr
}

// waitJetStream asks JetStream's API for the account's information until
// it answers, up to formTimeout: a cluster whose servers have just
// started has no meta leader yet, and its API does not answer until it
// has one.
func (c *Conn) waitJetStream(ctx context.Context, formTimeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, formTimeout)
	defer cancel()
	for {
		actx, acancel := c.opContext(ctx)
		_, err := c.js.AccountInfo(actx)
		acancel()
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		case ctx.Err() != nil:
			return fmt.Errorf("its API did not answer in %v: its servers have no meta leader "+
				"(too few of them up, or not routed to each other): %w", formTimeout, err)
		}
		c.log.Info("cluster: JetStream does not answer yet (no meta leader?); waiting", "url", c.nc.ConnectedUrlRedacted())
	}
}

// natsOptions are the client's options for the cluster block b: reconnect
// for ever, buffer nothing while disconnected (a write fails at once
// rather than later), give up a socket write after twice the timeout,
// and log every change of state.
//
// A write that the server does not read (a link that drops every packet,
// the connection still open) waits holding the client's lock: the
// client's pings cannot notice the silence, nor can a copy's wait
// (progress.go), nor any other publish start, so that every session in
// DATA hangs. The client's own write timeout, a minute by default, was
// the only bound. Twice the timeout leaves a write of one part (at most
// chunkSize and the client's buffer) a link of 60 KiB a second at the
// default timeout. A write that times out ends the connection, which the
// client then makes again (ReconnectOnFlusherError, and writeTimedOut for
// a publish that writes itself): over TLS the timeout leaves it unable to
// write at all (crypto/tls makes a write error final), which the client
// would otherwise notice only when its pings went unanswered, seconds
// after the link is back.
func (c *Conn) natsOptions(b config.Cluster) []nats.Option {
	opts := []nats.Option{
		nats.Name("gateway " + b.Node),
		nats.Timeout(dialTimeout),
		nats.FlusherTimeout(2 * c.timeout),
		nats.ReconnectOnFlusherError(),
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

// ServerURL is the URL of the server the connection is on, without
// credentials.
func (c *Conn) ServerURL() string { return c.nc.ConnectedUrlRedacted() }

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

// writeTimedOut makes the client connect again when err, a publish's, is
// its write giving up (natsOptions): a large part is written by the
// publish itself, not the client's flusher.
func (c *Conn) writeTimedOut(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.log.Warn("cluster: a write to NATS timed out; reconnecting", "err", err)
		c.nc.ForceReconnect()
	}
}
