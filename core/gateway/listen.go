package gateway

// This file is the front of the gateway: the one place smtp.Options are
// made from the config, the HTTP injection endpoint, and intake, the
// hand-off from a session's commit to the delivery engine.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

// smtpOptions are the options of the SMTP server for listener l: the only
// place they are made from the config.
func (g *Gateway) smtpOptions(l config.Listener) (smtp.Options, error) {
	var tlsConfig *tls.Config
	var err error
	if l.TLS != nil {
		certs, err := loadCertificates(l.TLS)
		if err != nil {
			return smtp.Options{}, err
		}
		g.certs = append(g.certs, namedCertificates{l.Name, certs})
		tlsConfig = certs.config()
	}
	var auth smtp.Authenticator
	if len(g.cfg.Auth.Users) > 0 {
		auth = smtp.NewPasswordTable(g.cfg.Auth.Users)
	}
	var postmaster envelope.Address // zero: postmaster@hostname
	if pm := g.cfg.Delivery.Postmaster; pm != "" {
		if postmaster, err = envelope.ParseAddress(pm); err != nil {
			return smtp.Options{}, fmt.Errorf("delivery.postmaster: %w", err)
		}
	}
	return smtp.Options{
		Hostname:           g.cfg.Hostname,
		Listener:           l,
		LocalDomains:       g.cfg.Domains,
		Postmaster:         postmaster,
		RelayNetworks:      g.cfg.Relay.Networks,
		RelayAuthenticated: g.cfg.Relay.Authenticated,
		TLS:                tlsConfig,
		Auth:               auth,
		AuthGuard:          g.authGuard,
		Hooks:              g.pipeline.live,
		Spool:              intake{spool: g.spool, engine: g.engine.Engine},
		ETRN:               g.engine.RetryDomain,
		VerifySender:       g.dns.DomainExists,
		MailAuth:           g.mailAuth,
		FreeSpace:          freeSpace(filepath.Join(g.cfg.DataDir, "queue")),
		Log:                g.log.With("listener", l.Name),
	}, nil
}

// freeSpace reports the bytes an unprivileged writer has free in the
// file system that holds dir (the spool's folder), for the SMTP servers'
// early 452 4.3.1. It asks the kernel at most every freeSpaceAge and
// answers from the last figure in between: a statfs per MAIL was 1.7% of
// the CPU of accepting small messages, and the answer is a courtesy (a
// full disk still fails the spool's writes, which the client is told).
func freeSpace(dir string) func() (int64, error) {
	var mu sync.Mutex
	var free int64
	var asked time.Time
	return func() (int64, error) {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(asked) >= freeSpaceAge || now.Before(asked) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				return 0, fmt.Errorf("statfs %s: %w", dir, err)
			}
			free, asked = int64(st.Bavail)*int64(st.Bsize), now
		}
		return free, nil
	}
}

// freeSpaceAge is how long freeSpace trusts its last figure.
const freeSpaceAge = 100 * time.Millisecond

// tlsMode names a listener's TLS for the logs: "none", "starttls" or
// "implicit" (TLS from the first byte).
func tlsMode(t *config.TLS) string {
	switch {
	case t == nil:
		return "none"
	case t.Implicit:
		return "implicit"
	}
	return "starttls"
}

// LoadTLS loads a listener's certificates; nil for none. An ECDSA
// certificate comes first (see certificates.get), and the RSA one stays
// for clients that take only RSA.
func LoadTLS(t *config.TLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	c, err := loadCertificates(t)
	if err != nil {
		return nil, err
	}
	return c.config(), nil
}

// certificates are a listener's certificates as its TLS handshakes take
// them: read when the listener starts and again by each reload, so that
// a renewed certificate is served without a restart (as Postfix's
// `postfix reload` does). A reload that cannot read them keeps the ones
// it had.
type certificates struct {
	files  config.TLS
	loaded atomic.Pointer[[]tls.Certificate] // ECDSA first, if any
}

// loadCertificates reads the certificates of t.
func loadCertificates(t *config.TLS) (*certificates, error) {
	c := &certificates{files: *t}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the certificate files again and serves them from the next
// handshake on; on an error the ones served so far stay.
func (c *certificates) reload() error {
	certs, err := c.files.Certificates()
	if err != nil {
		return err
	}
	c.loaded.Store(&certs)
	return nil
}

// config is the listener's tls.Config, whose handshakes take the
// certificates loaded last.
func (c *certificates) config() *tls.Config {
	return &tls.Config{GetCertificate: c.get, MinVersion: tls.VersionTLS12}
}

// get picks a handshake's certificate: the first the client takes for
// the name it asks for (SNI), else the first whose key it takes whatever
// the name (a mail client asks for the MX name, which the certificate
// may not cover, and opportunistic TLS goes on regardless), else cert's.
// crypto/tls, given Certificates, would fall back to the first, and fail
// an RSA-only client that asks for another name with the ECDSA one.
func (c *certificates) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	certs := *c.loaded.Load()
	for i := range certs {
		if hello.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	anyName := *hello
	anyName.ServerName = ""
	for i := range certs {
		if anyName.SupportsCertificate(&certs[i]) == nil {
			return &certs[i], nil
		}
	}
	return &certs[len(certs)-1], nil
}

// intake is the spool as the SMTP servers see it: a queue draft that, once
// committed (durable), is handed to the delivery engine as stored, or
// stored parked when its destination is down (delivery.Engine.Commit).
// The engine expects it from before the commit (Engine.Expect), so that
// no scan or operator touches it before the hand-over.
type intake struct {
	spool  *queue.Spool
	engine *delivery.Engine
}

func (in intake) Create(ctx context.Context) (smtp.Draft, error) {
	d, err := in.spool.Create(ctx)
	if err != nil {
		return nil, err
	}
	return intakeDraft{d, in.engine}, nil
}

// intakeDraft is a queue draft that hands itself to the engine once
// committed, or is committed parked when its destination is down
// (delivery.Engine.Commit).
type intakeDraft struct {
	*queue.Draft
	engine *delivery.Engine
}

func (d intakeDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	return d.engine.Commit(ctx, d.Draft, env, header)
}

// injectEndpoint is the HTTP injection endpoint: an smtp.Server that never
// listens (inject serves its sessions over net.Pipe) behind an HTTP server.
type injectEndpoint struct {
	srv  *smtp.Server
	http *http.Server
	ln   net.Listener
	log  *slog.Logger
}

// newInject builds the injection endpoint when the config has an inject
// block (nil otherwise). Its sessions have the first listener's limits,
// no TLS and no AUTH, and may relay: the API client is authenticated by
// its token.
func (g *Gateway) newInject() (*injectEndpoint, error) {
	if g.cfg.Inject.Address == "" {
		return nil, nil
	}
	l := g.cfg.Listeners[0]
	l.Name, l.Address, l.AuthRequired, l.TLS = "inject", g.cfg.Inject.Address, false, nil
	opt, err := g.smtpOptions(l)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	opt.RelayAuthenticated, opt.Auth, opt.ETRN = true, nil, nil
	srv, err := smtp.NewServer(opt)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, fmt.Errorf("inject: %w", err)
	}
	log := g.log.With("part", "inject")
	h := inject.New(inject.Options{
		Server:   srv,
		Token:    g.cfg.Inject.Token,
		Hostname: g.cfg.Hostname,
		MaxSize:  l.MaxMessageSize*4/3 + 1<<20, // base64 in JSON, plus the document
		Log:      log,
	})
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	g.log.Info("inject listening", "address", ln.Addr().String())
	return &injectEndpoint{srv: srv, http: hs, ln: ln, log: log}, nil
}

// serve serves HTTP until shutdown.
func (e *injectEndpoint) serve() error {
	if err := e.http.Serve(e.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shutdown lets the requests in flight finish, then stops their SMTP side.
func (e *injectEndpoint) shutdown(ctx context.Context) {
	if err := e.http.Shutdown(ctx); err != nil {
		e.log.Warn("inject shutdown", "err", err)
	}
	if err := e.srv.Shutdown(ctx); err != nil {
		e.log.Warn("inject shutdown", "err", err)
	}
}
