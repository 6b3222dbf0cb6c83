// Package gateway assembles a whole mail gateway from a *config.Config and
// runs it: the spool, the resolver, the hook pipeline (built from the lua
// and plugin blocks, and reloaded live), the SMTP listeners, the delivery
// engine and its transports, the admin API, the HTTP injection endpoint,
// the pickup of local mail (gateway sendmail), the key-value sweep, and,
// with a cluster block, the connection to NATS that the hooks' key-value
// stores live on (core/cluster); and it stops them in the order that loses
// nothing. cmd/gateway parses flags, makes the logger and calls New and
// Run; every test that needs a whole gateway builds it the same way
// (gatewaytest).
//
// One message, top-down: an smtp.Server session runs the hook stages on
// the pipeline's chain and writes the message into a draft of the spool
// (intake); the draft's commit makes it durable and hands its ID to the
// delivery engine, which runs the predelivery stage and a transport for
// each destination, and records the outcome in the spool.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/arc"
	"github.com/mailgate/gateway/core/authguard"
	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/tlsrpt"
)

// Options are what a Gateway takes besides its configuration.
type Options struct {
	Log     *slog.Logger // nil = discard
	Version string       // reported by the admin API's gateway_build_info
	// Resolver, when set, are the DNS servers ("host:port") to use instead
	// of the config's delivery.resolver (tests: a DNS server on loopback).
	Resolver []string
	// HTTPSPort, when set, is the port MTA-STS policies are fetched from
	// and TLS-RPT reports posted to instead of 443 (tests).
	HTTPSPort int
	// AcceptEmptySpool starts with a new or empty spool.db beside
	// existing bodies (moved to orphans/) instead of refusing to
	// (queue.ErrEmptySpool): the operator's -accept-empty-spool.
	AcceptEmptySpool bool
}

// Gateway is one running mail gateway. New builds it and binds its
// sockets; Run serves until its context ends and then stops everything.
type Gateway struct {
	cfg       *config.Config
	log       *slog.Logger
	spool     *queue.Spool
	dns       *resolver.Resolver
	mailAuth  *mailauth.Checker // nil without an authentication block
	pipeline  *pipeline
	smtpOut   *delivery.SMTP
	engine    lateEngine
	admin     *admin.Admin
	adminLn   net.Listener // nil without an admin address
	listeners []*listener
	certs     []namedCertificates // the listeners' with a tls block, read again by a reload
	authGuard *authguard.Guard
	inject    *injectEndpoint // nil without an inject block
	pickup    *pickupPart     // local mail that gateway sendmail left in data_dir/pickup
	cluster   *cluster.Conn   // the connection to NATS; nil without a cluster block
	nodes     *cluster.Nodes  // the nodes' heartbeats; nil without a cluster block
	replica   *cluster.Replica
	// takeoverCount and takenOver count the silent nodes' queues taken
	// over and their messages (takeover.go).
	takeoverCount, takenOver atomic.Int64
	version                  string // Options.Version, for the heartbeats
	started                  time.Time
	// tlsReports sends the TLS-RPT reports; nil without tls_reports.
	tlsReports *tlsrpt.Reporter

	runOnce sync.Once
}

// namedCertificates are a listener's certificates and its name, for the
// logs of a reload.
type namedCertificates struct {
	listener string
	certs    *certificates
}

// listener is one SMTP listener: its server and its bound socket.
type listener struct {
	name string
	srv  *smtp.Server
	ln   net.Listener
}

// New builds the gateway cfg describes and binds its sockets, so that
// Addr answers at once; nothing is served until Run. On error everything
// opened so far is closed again. The caller must call Run (or Close, to
// give up without running).
func New(ctx context.Context, cfg *config.Config, opt Options) (*Gateway, error) {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: log, version: opt.Version, started: time.Now()}
	if err := g.open(ctx, opt); err != nil {
		g.release()
		return nil, err
	}
	return g, nil
}

// open opens the parts in the order they depend on each other.
func (g *Gateway) open(ctx context.Context, opt Options) error {
	cfg := g.cfg
	replica, err := g.joinCluster(ctx)
	if err != nil {
		return err
	}
	qopt := queue.Options{Log: g.log.With("part", "queue"), AcceptEmptySpool: opt.AcceptEmptySpool, Replica: replica}
	if g.spool, err = queue.Open(filepath.Join(cfg.DataDir, "queue"), qopt); err != nil {
		return err
	}
	if g.nodes != nil {
		if err := g.reconcile(ctx); err != nil {
			return err
		}
	}
	servers := cfg.Delivery.Resolver
	if len(opt.Resolver) > 0 {
		servers = opt.Resolver
	}
	if g.dns, err = resolver.New(resolver.Options{Servers: servers, Log: g.log.With("part", "resolver")}); err != nil {
		return err
	}
	if err = g.newMailAuth(); err != nil {
		return err
	}
	kv, err := g.kvStores(ctx)
	if err != nil {
		return err
	}
	hookLog := g.log.With("part", "hook")
	svc := hostsvc.New(hostsvc.Options{Resolver: g.dns, Durable: kv.durable, Ephemeral: kv.ephemeral, Log: hookLog})
	deps := hookDeps{Services: svc, Log: hookLog}
	if g.pipeline, err = newPipeline(ctx, cfg, deps); err != nil {
		return err
	}
	if err = g.newEngine(opt); err != nil {
		return err
	}
	g.authGuard = authguard.New(authguard.Options{
		FailureLimit: cfg.Auth.FailureLimit,
		Lockout:      cfg.Auth.Lockout,
		FailureDelay: cfg.Auth.FailureDelay,
		Log:          g.log.With("part", "authguard"),
	})
	return g.listen()
}

// newMailAuth builds the checker of inbound mail from the authentication
// block, on the gateway's resolver (its cache included).
func (g *Gateway) newMailAuth() error {
	a := g.cfg.Authentication
	if a == nil {
		return nil
	}
	var err error
	g.mailAuth, err = mailauth.New(mailauth.Options{
		SPF:        a.SPF,
		DKIM:       a.DKIM,
		DMARC:      a.DMARC,
		AuthservID: a.AuthservID,
		Resolver:   g.dns,
		ARC:        g.arcVerifier(a.ARC),
		Log:        g.log.With("part", "mailauth"),
	})
	return err
}

// arcVerifier verifies a received message's ARC chain (core/arc) with
// the gateway's resolver, when the authentication block says arc = true.
func (g *Gateway) arcVerifier(on bool) mailauth.ARCVerifier {
	if !on {
		return nil
	}
	return func(ctx context.Context, msg []byte) (string, string) {
		r, err := arc.Verify(ctx, msg, g.dns.TXT)
		if err != nil {
			g.log.Debug("arc: look-up failed", "err", err)
		}
		return string(r.Status), r.ResInfo()
	}
}

// arcSealing is how the engine seals mail it forwards: with the key of
// the dkim block that authentication's arc_seal names (config checked it
// is there and RSA), nil when there is none. a is always the block the
// gateway started with, which the checker at data runs on: a reload
// changes the keys, not the authserv-id (an authentication change needs a
// restart), so the sealed results are always the ones our checks wrote.
func arcSealing(a *config.Authentication, keys *dkim.Keys) *delivery.ARCSealing {
	if a == nil || a.ARCSeal == "" {
		return nil
	}
	d, ok := keys.Lookup(a.ARCSeal)
	if !ok {
		return nil
	}
	return &delivery.ARCSealing{
		Sealer:     arc.Sealer{Domain: d.Name, Selector: d.Selector, Key: d.Key.Signer()},
		AuthservID: a.AuthservID,
	}
}

// newEngine builds the delivery engine with its transports, and the admin
// API that reports on it and on the servers.
func (g *Gateway) newEngine(opt Options) error {
	cfg, version := g.cfg, opt.Version
	ts, err := g.newTransportSecurity(opt)
	if err != nil {
		return err
	}
	g.tlsReports = ts.reports
	g.smtpOut = delivery.NewSMTP(delivery.SMTPOptions{
		Hostname:       cfg.Hostname,
		Resolver:       g.dns,
		Port:           cfg.Delivery.Port,
		ConnectTimeout: cfg.Delivery.ConnectTimeout,
		CommandTimeout: cfg.Delivery.CommandTimeout,
		AlwaysBDAT:     cfg.Delivery.Chunking == "always",
		DeadAddressTTL: deadAddressTTL(cfg.Delivery.DeadHostTTL),
		TLSSessions:    tlsSessions(cfg.Delivery.TLSSessions),
		Self:           g.selfAddrs(cfg.Delivery.ProxyAddresses),
		MTASTS:         ts.sts,
		DANE:           cfg.Delivery.DANE,
		RootCAs:        ts.roots,
		Reports:        ts.reporter(),
		Log:            g.log.With("part", "smtp-out"),
	})
	transports := map[string]delivery.Transport{
		"smtp": g.smtpOut,
		"lmtp": delivery.NewLMTP(delivery.LMTPOptions{
			Hostname:       cfg.Hostname,
			ConnectTimeout: cfg.Delivery.ConnectTimeout,
			CommandTimeout: cfg.Delivery.CommandTimeout,
			Log:            g.log.With("part", "lmtp"),
		}),
		"maildir": delivery.NewMaildirTransport(cfg.Hostname),
	}
	g.pipeline.transports.add(transports)
	// The admin API reads the engine and the servers only when a request
	// comes, and the engine reports to the admin's metrics: the admin is
	// built first, over the Gateway, which forwards to both.
	var clusterAPI admin.Cluster // nil interface without a cluster block
	if g.cluster != nil {
		clusterAPI = clusterView{g}
	}
	g.admin = admin.New(admin.Options{
		Queue:   g.spool,
		Engine:  &g.engine,
		Servers: []admin.ServerStats{admin.ServerStatsFunc(g.serverStats)},
		Out:     g.smtpOut,
		Cluster: clusterAPI,
		Reload:  g.Reload,
		Log:     g.log.With("part", "admin"),
		Version: version,
	})
	keys, err := dkimKeys(cfg.DKIM)
	if err != nil {
		return err
	}
	g.engine.Engine, err = delivery.New(delivery.Options{
		Spool:      g.spool,
		Hostname:   cfg.Hostname,
		Config:     cfg.Delivery,
		Transports: transports,
		Hooks:      g.pipeline.live,
		Observer:   g.admin.Observer(),
		Log:        g.log.With("part", "delivery"),
		MaxHops:    cfg.MaxHops(),
		DKIM:       keys,
	})
	if err == nil {
		g.engine.SetARC(arcSealing(cfg.Authentication, keys))
	}
	g.pipeline.applied = g.applyReload
	return err
}

// applyReload applies what a reload changes outside the pipeline:
// delivery's hold_domains, the listeners' certificates (read again from
// the files they were read from, which a changed listener block does not
// move: that needs a restart) and the dkim keys. It runs only once the
// reloaded configuration loaded, so its keys parsed. What it could not
// apply stays as it was, and its error says what.
func (g *Gateway) applyReload(ctx context.Context, cfg *config.Config) error {
	g.engine.SetHoldDomains(ctx, cfg.Delivery.HoldDomains)
	var errs []error
	for _, n := range g.certs {
		if err := n.certs.reload(); err != nil {
			errs = append(errs, fmt.Errorf("listener %q keeps its certificates: %w", n.listener, err))
		}
	}
	keys, err := dkimKeys(cfg.DKIM)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("the dkim keys stay as they were: %w", err))...)
	}
	g.engine.SetDKIM(keys)
	g.engine.SetARC(arcSealing(g.cfg.Authentication, keys)) // the running block: see arcSealing
	g.log.Info("dkim signing keys", "domains", strings.Join(keys.Names(), " "))
	return errors.Join(errs...)
}

// dkimKeys is the signing key set of the dkim blocks, whose keys the
// configuration parsed when it loaded.
func dkimKeys(blocks []config.DKIM) (*dkim.Keys, error) {
	ds := make([]dkim.Domain, len(blocks))
	for i, b := range blocks {
		ds[i] = dkim.Domain{Name: b.Domain, Selector: b.Selector, Key: b.Key, Headers: b.Headers}
	}
	keys, err := dkim.NewKeys(ds)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return keys, nil
}

// selfAddrs tells the SMTP transport where this gateway receives mail,
// so that it never delivers to itself as an MX: the listeners' bound
// addresses and proxy, at any port. The engine is built before the
// listeners are bound, so the list is made when first asked (by the first
// delivery, which Run starts after binding), and then kept.
func (g *Gateway) selfAddrs(proxy []netip.Addr) func() []netip.AddrPort {
	return sync.OnceValue(func() []netip.AddrPort {
		var out []netip.AddrPort
		for _, l := range g.listeners {
			if a, ok := l.ln.Addr().(*net.TCPAddr); ok {
				ap := a.AddrPort()
				out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			}
		}
		for _, ip := range proxy {
			out = append(out, netip.AddrPortFrom(ip, 0))
		}
		return out
	})
}

// deadAddressTTL maps dead_host_ttl to SMTPOptions.DeadAddressTTL, where
// 0 means the default and off is negative.
func deadAddressTTL(ttl time.Duration) time.Duration {
	if ttl == 0 {
		return -1
	}
	return ttl
}

// tlsSessions maps tls_sessions to SMTPOptions.TLSSessions, where 0
// means the default and none is negative.
func tlsSessions(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// listen builds an SMTP server per listener block and binds its address,
// then the admin and inject endpoints.
func (g *Gateway) listen() error {
	for _, l := range g.cfg.Listeners {
		opt, err := g.smtpOptions(l)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		srv, err := smtp.NewServer(opt)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		ln, err := smtp.Listen(context.Background(), l.Address)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		g.listeners = append(g.listeners, &listener{name: l.Name, srv: srv, ln: ln})
		g.log.Info("listening", "listener", l.Name, "address", ln.Addr().String(), "tls", tlsMode(l.TLS),
			"proxy_protocol", len(l.ProxyProtocol) > 0)
	}
	if a := g.cfg.Admin.Address; a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		g.adminLn = ln
		g.log.Info("admin listening", "address", ln.Addr().String())
	}
	var err error
	if g.inject, err = g.newInject(); err != nil {
		return err
	}
	g.pickup, err = g.newPickup()
	return err
}

// Addr returns the bound address of the listener called name (a listener
// block's label, or "admin" or "inject"); nil when there is none.
func (g *Gateway) Addr(name string) net.Addr {
	for _, l := range g.listeners {
		if l.name == name {
			return l.ln.Addr()
		}
	}
	switch {
	case name == "admin" && g.adminLn != nil:
		return g.adminLn.Addr()
	case name == "inject" && g.inject != nil:
		return g.inject.ln.Addr()
	}
	return nil
}

// Spool returns the gateway's queue: tests and tools read it, the gateway
// owns it (Run closes it).
func (g *Gateway) Spool() *queue.Spool { return g.spool }

// Engine returns the delivery engine.
func (g *Gateway) Engine() *delivery.Engine { return g.engine.Engine }

// lateEngine is the engine as the admin API sees it: the API is built
// before the engine (whose metrics it collects) and reaches the engine
// through this only when a request comes.
type lateEngine struct{ *delivery.Engine }

// Reload rebuilds the hook pipeline from the configuration file and swaps
// it in; on any failure the running pipeline stays. SIGHUP and POST
// /v1/reload call it.
func (g *Gateway) Reload(ctx context.Context) error { return g.pipeline.reload(ctx) }

// serverStats adds up the counters of every listener's server.
func (g *Gateway) serverStats() smtp.ServerStats {
	var sum smtp.ServerStats
	for _, l := range g.listeners {
		sum.Add(l.srv.Stats())
	}
	return sum
}

// Close releases a gateway that was built but never run. After Run it
// does nothing.
func (g *Gateway) Close() error {
	var err error
	g.runOnce.Do(func() { err = g.release() })
	return err
}

// release closes, in order, whatever New opened: sockets, the pipeline's
// handlers (which stops the plugins), the outbound SMTP connections, the
// spool, and the connection to NATS last.
func (g *Gateway) release() error {
	for _, l := range g.listeners {
		l.ln.Close()
	}
	if g.adminLn != nil {
		g.adminLn.Close()
	}
	if g.inject != nil {
		g.inject.ln.Close()
	}
	if g.pipeline != nil {
		g.pipeline.close()
	}
	if g.smtpOut != nil {
		g.smtpOut.Close()
	}
	var err error
	if g.spool != nil {
		err = g.spool.Close()
	}
	if g.replica != nil {
		g.replica.Close() // after the spool: its last removals go to the stream
	}
	if g.cluster != nil {
		g.cluster.Close()
	}
	return err
}

// errRunTwice is Run called a second time, or after Close.
var errRunTwice = errors.New("gateway: Run after Run or Close")
