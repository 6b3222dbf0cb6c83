package delivery

// This file is the LMTP transport (RFC 2033): hand-off to a local delivery
// agent (Dovecot, Cyrus) over TCP or a unix socket, with one outcome per
// recipient after the message.

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/smtp"
)

// LMTPOptions configure an LMTP transport.
type LMTPOptions struct {
	// Hostname is the LHLO name; "" = "localhost".
	Hostname string
	// ConnectTimeout bounds the connect; 0 = config.DefaultDelivery's (30s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each reply and each read or write of the
	// message; 0 = config.DefaultDelivery's (5m).
	CommandTimeout time.Duration
	// Log receives one record per attempt; nil = discard.
	Log *slog.Logger
}

// LMTP delivers to an LMTP server: Route.Path names a unix socket, else
// Route.Via is its "host:port" over TCP. There is no MX look-up and no
// TLS (the server is local), and each job gets its own connection, closed
// with QUIT afterwards. It is safe for concurrent use.
//
// Outcomes follow the SMTP transport's rules (see SMTP), except that after
// the message each accepted recipient has its own reply (RFC 2033 §4.2),
// which decides its result. A route with neither Path nor Via, a refused
// connection, or an LHLO or greeting that is not 2xx is Temporary for
// every recipient. RemoteMTA is the Via host ("[ip]" for an address), ""
// over a unix socket.
//
// The LMTP server is the final delivery agent unless it offers DSN: a
// Delivered result's Handoff is HandoffFinal, or HandoffDSN (NOTIFY and
// ORCPT passed on, the success DSN its to send) when it offers DSN, as
// Postfix does with lmtp_assume_final.
type LMTP struct {
	opt LMTPOptions
	log *slog.Logger
}

// NewLMTP returns an LMTP transport with opt's zero fields set to their
// defaults.
func NewLMTP(opt LMTPOptions) *LMTP {
	def := config.DefaultDelivery()
	if opt.ConnectTimeout <= 0 {
		opt.ConnectTimeout = def.ConnectTimeout
	}
	if opt.CommandTimeout <= 0 {
		opt.CommandTimeout = def.CommandTimeout
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &LMTP{opt: opt, log: opt.Log}
}

// Deliver implements Transport.
func (l *LMTP) Deliver(ctx context.Context, job *Job) []Result {
	if len(job.Recipients) == 0 {
		return nil
	}
	network, addr, remote := "unix", job.Route.Path, ""
	if addr == "" {
		host, port, err := splitVia(job.Route.Via, 0)
		switch {
		case job.Route.Via == "":
			return allResults(job, localResult(Temporary, 451, 4, 3, 5, "LMTP route with neither a socket path nor a host:port"))
		case err != nil:
			return allResults(job, localResult(Temporary, 451, 4, 3, 5, err.Error()))
		case port == 0:
			return allResults(job, localResult(Temporary, 451, 4, 3, 5, "LMTP route "+job.Route.Via+" has no port"))
		}
		network, addr, remote = "tcp", job.Route.Via, remoteName(host)
		if requiresTLS(job) && !isLoopback(host) {
			return allResults(job, localResult(Permanent, 550, 5, 7, 30, "REQUIRETLS: the LMTP server "+
				job.Route.Via+" is reached over TCP without TLS, off this machine"))
		}
	}
	where := addr
	if network == "unix" {
		where = "unix:" + addr
	}

	d := net.Dialer{Timeout: l.opt.ConnectTimeout}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		l.log.InfoContext(ctx, "lmtp: connect failed", "id", job.ID, "addr", where, "err", err)
		return allResults(job, localResult(Temporary, 451, 4, 4, 1, "connection failed: "+where+": "+resultText(err)))
	}
	c, err := smtp.NewClient(ctx, conn, smtp.ClientOptions{
		LocalName: l.opt.Hostname,
		Timeout:   l.opt.CommandTimeout,
		Log:       l.log,
		LMTP:      true,
	})
	if err == nil {
		err = c.Hello(ctx)
	}
	if err != nil {
		l.log.InfoContext(ctx, "lmtp: session refused", "id", job.ID, "addr", where, "err", err)
		if c != nil {
			l.close(ctx, c)
		}
		var reply smtp.Reply
		if errors.As(err, &reply) {
			return allResults(job, hopReplyResult(reply, remote))
		}
		r := localResult(Temporary, 451, 4, 4, 2, "connection to "+where+" failed: "+resultText(err))
		r.RemoteMTA = remote
		return allResults(job, r)
	}
	rs, lost, id := transactJob(ctx, c, withoutRequireTLS(job), where, remote)
	if rs == nil {
		rs = allResults(job, *lost)
	}
	setHandoff(rs, c, HandoffFinal)
	l.log.InfoContext(ctx, "lmtp: attempt", "id", job.ID, "addr", where, "queued_as", id, "outcome", outcomeSummary(rs))
	l.close(ctx, c)
	return rs
}

// close ends a session: QUIT if it is still usable.
func (l *LMTP) close(ctx context.Context, c *smtp.Client) {
	if c.Err() != nil {
		c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quitTimeout)
	defer cancel()
	if err := c.Quit(ctx); err != nil {
		l.log.DebugContext(ctx, "lmtp: QUIT", "err", err)
	}
}

var _ Transport = (*LMTP)(nil)

// withoutRequireTLS is job for a final delivery: REQUIRETLS binds the
// relays a message passes (RFC 8689 §4.2.1), not the server on this
// machine that puts it in the mailbox (a unix socket or a loopback
// address; Deliver refuses a REQUIRETLS message for any other), so it is
// not passed to the LMTP server.
func withoutRequireTLS(job *Job) *Job {
	if !requiresTLS(job) {
		return job
	}
	env := *job.Envelope
	env.RequireTLS = false
	j := *job
	j.Envelope = &env
	return &j
}

// isLoopback reports whether host is "localhost" or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
