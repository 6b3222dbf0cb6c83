package main

// sendmail -bs: an SMTP session on stdin and stdout, as Postfix's
// stand-alone smtpd; each message goes into the pickup directory.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/pickup"
	"github.com/mailgate/gateway/core/smtp"
)

// sendmailSMTP serves one SMTP session on c.Stdin and c.Stdout. It has
// the first listener's limits, no TLS and no AUTH: the local user is
// authenticated by being local, and may relay, as with the sendmail
// command line. Hooks run when the server picks the message up.
func sendmailSMTP(ctx context.Context, c *cli, cfg *config.Config) error {
	dir := gateway.PickupDir(cfg.DataDir)
	if err := preparePickup(dir); err != nil {
		return err
	}
	l := cfg.Listeners[0]
	l.Name, l.Address, l.AuthRequired, l.TLS = "sendmail", "", false, nil
	srv, err := smtp.NewServer(smtp.Options{
		Hostname:           cfg.Hostname,
		Listener:           l,
		LocalDomains:       cfg.Domains,
		RelayAuthenticated: true,
		Spool:              pickupSpool{dir: dir, uid: os.Getuid()},
		Log:                slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return exit(exConfig, "%v", err)
	}
	client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)
	if err := srv.ServeConn(stdioConn{c.Stdin, c.Stdout}, client, fmt.Sprintf("uid=%d", os.Getuid())); err != nil {
		return exit(exSoftware, "%v", err)
	}
	return nil
}

// pickupSpool is the spool of a -bs session: each message becomes a file
// of the pickup directory at its commit.
type pickupSpool struct {
	dir string
	uid int
}

func (s pickupSpool) Create(ctx context.Context) (smtp.Draft, error) {
	return &pickupDraft{spool: s, name: pickup.NewName(time.Now())}, nil
}

// pickupDraft holds a message in memory (the session bounds its size)
// until its commit writes it.
type pickupDraft struct {
	spool pickupSpool
	name  string
	buf   bytes.Buffer
}

func (d *pickupDraft) ID() string                  { return d.name }
func (d *pickupDraft) Write(p []byte) (int, error) { return d.buf.Write(p) }
func (d *pickupDraft) Abort() error                { d.buf.Reset(); return nil }

func (d *pickupDraft) Open() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(d.buf.Bytes())), nil
}

// Commit writes the message with its envelope, BODY=BINARYMIME included
// (the server submits it again with BDAT, byte for byte). The session's
// Received field is left out: the server's pickup session adds the
// gateway's own.
func (d *pickupDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	penv := &pickup.Envelope{
		Sender: env.Sender, Recipients: env.Recipients, Ret: env.Ret, EnvID: env.EnvID,
		Body: env.Body, SMTPUTF8: env.SMTPUTF8, UID: d.spool.uid,
	}
	return pickup.WriteName(d.spool.dir, d.name, penv, bytes.NewReader(d.buf.Bytes()))
}

// stdioConn is stdin and stdout as the session's connection. Deadlines
// do nothing: the session ends when stdin does.
type stdioConn struct {
	io.Reader
	io.Writer
}

func (stdioConn) Close() error                     { return nil }
func (stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (stdioConn) SetDeadline(time.Time) error      { return nil }
func (stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }
