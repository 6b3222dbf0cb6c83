package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/smtp"
)

const defaultConfig = "gateway.hcl"

func runServe(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "serve", "[-config gateway.hcl]")
	path := fs.String("config", defaultConfig, "configuration file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until the gateway stops")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(c.Stderr, cfg.Log)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, log)
}

// serve runs the gateway described by cfg until ctx is done, then stops
// gracefully in the order that loses nothing: the SMTP listeners close and
// sessions get cfg.ShutdownTimeout to finish, then the delivery engine lets
// its attempts in flight end, then the admin API stops, and the spool is
// closed last.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) (err error) {
	spool, err := queue.Open(filepath.Join(cfg.DataDir, "queue"), queue.Options{Log: log.With("part", "queue")})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := spool.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	dns, err := resolver.New(resolver.Options{Servers: cfg.Delivery.Resolver, Log: log.With("part", "resolver")})
	if err != nil {
		return err
	}
	// The hook pipeline runs behind a hook.Live, which a reload (SIGHUP or
	// POST /v1/reload) points at a newly built chain.
	deps := hookDeps{Resolver: dns, KV: spool, Log: log.With("part", "hook")}
	set, err := buildHooks(ctx, cfg, deps)
	if err != nil {
		return err
	}
	// Plugin transports are found only now that the plugins run: a route
	// naming a transport nobody provides is a startup error.
	if err := checkRoutes(cfg.Delivery.Routes, set.transports); err != nil {
		closeAll(set.closers)
		return err
	}
	hooks := hook.NewLive(set.chain)
	plugged := newPluginTransports(set.transports)
	reloader := &hookReloader{
		file:       cfg.File,
		running:    cfg,
		deps:       deps,
		live:       hooks,
		transports: plugged,
		current:    set.closers,
		log:        log.With("part", "reload"),
	}
	defer reloader.close() // after the servers and the engine stop, before the spool closes
	if set.chain.Len() > 0 {
		log.Info("hooks loaded", "pipeline", strings.Join(cfg.Pipeline, " "))
	}

	smtpTransport := delivery.NewSMTP(delivery.SMTPOptions{
		Hostname:       cfg.Hostname,
		Resolver:       dns,
		Port:           cfg.Delivery.Port,
		ConnectTimeout: cfg.Delivery.ConnectTimeout,
		CommandTimeout: cfg.Delivery.CommandTimeout,
		Log:            log.With("part", "smtp-out"),
	})
	defer smtpTransport.Close()
	transports := map[string]delivery.Transport{
		"smtp": smtpTransport,
		"lmtp": delivery.NewLMTP(delivery.LMTPOptions{
			Hostname:       cfg.Hostname,
			ConnectTimeout: cfg.Delivery.ConnectTimeout,
			CommandTimeout: cfg.Delivery.CommandTimeout,
			Log:            log.With("part", "lmtp"),
		}),
		"maildir": delivery.NewMaildirTransport(cfg.Hostname),
	}
	for _, name := range slices.Sorted(maps.Keys(set.transports)) {
		transports[name] = plugged.transport(name)
	}

	// The admin API reports on the engine and the servers, and the engine
	// reports to the admin's metrics: the admin is built first and reads
	// both only when a request comes, after they are set below.
	var servers []*smtp.Server
	var engineRef struct{ *delivery.Engine }
	adm := admin.New(admin.Options{
		Queue:   spool,
		Engine:  &engineRef,
		Servers: []admin.ServerStats{admin.ServerStatsFunc(func() smtp.ServerStats { return sumStats(servers) })},
		Reload:  reloader.reload,
		Log:     log.With("part", "admin"),
		Version: version,
	})
	engine, err := delivery.New(delivery.Options{
		Spool:      spool,
		Hostname:   cfg.Hostname,
		Config:     cfg.Delivery,
		Transports: transports,
		Hooks:      hooks,
		Observer:   adm.Observer(),
		Log:        log.With("part", "delivery"),
	})
	if err != nil {
		return err
	}
	engineRef.Engine = engine

	var auth smtp.Authenticator
	if len(cfg.Auth.Users) > 0 {
		auth = smtp.NewPasswordTable(cfg.Auth.Users)
	}
	var listeners []net.Listener
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	for _, l := range cfg.Listeners {
		tlsConfig, err := loadTLS(l.TLS)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		srv, err := smtp.NewServer(smtp.Options{
			Hostname:           cfg.Hostname,
			Listener:           l,
			LocalDomains:       cfg.Domains,
			RelayNetworks:      cfg.Relay.Networks,
			RelayAuthenticated: cfg.Relay.Authenticated,
			TLS:                tlsConfig,
			Auth:               auth,
			Hooks:              hooks,
			Spool:              spoolAdapter{spool: spool, committed: engine.Enqueue},
			ETRN:               engine.RetryDomain,
			VerifySender:       dns.DomainExists,
			Log:                log.With("listener", l.Name),
		})
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		servers = append(servers, srv)
		listeners = append(listeners, ln)
		log.Info("listening", "listener", l.Name, "address", ln.Addr().String(), "tls", tlsConfig != nil)
	}

	injectHTTP, injectSrv, err := startInject(cfg, log, smtp.Options{
		Hostname:           cfg.Hostname,
		LocalDomains:       cfg.Domains,
		RelayNetworks:      cfg.Relay.Networks,
		RelayAuthenticated: true, // the API client is authenticated by its token
		Hooks:              hooks,
		Spool:              spoolAdapter{spool: spool, committed: engine.Enqueue},
		VerifySender:       dns.DomainExists,
	})
	if err != nil {
		return err
	}

	// Every goroutine below is owned here and stopped before serve returns.
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(engineCtx) }()

	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	adminDone := make(chan error, 1)
	if cfg.Admin.Address != "" {
		ln, err := net.Listen("tcp", cfg.Admin.Address)
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		log.Info("admin listening", "address", ln.Addr().String())
		go func() { adminDone <- adm.Serve(adminCtx, ln) }()
	} else {
		adminDone <- nil
	}

	hupCtx, stopHUP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHUP()
	hupDone := reloader.onSIGHUP(hupCtx)

	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSweep()
	sweepDone := sweepKV(sweepCtx, spool, kvSweepInterval, log.With("part", "queue"))

	var wg sync.WaitGroup
	serveErr := make(chan error, len(servers))
	for i, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(listeners[i]); err != nil && !errors.Is(err, net.ErrClosed) {
				serveErr <- err
			}
		}()
	}

	select {
	case <-ctx.Done():
		log.Info("stopping", "grace", cfg.ShutdownTimeout.String())
	case err = <-serveErr:
		log.Error("listener failed; stopping", "err", err)
	}
	stopHUP() // no reload once stopping
	<-hupDone
	// The caller's ctx is done: the grace period needs a context of its own.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var sw sync.WaitGroup
	for _, srv := range servers {
		sw.Add(1)
		go func() {
			defer sw.Done()
			if err := srv.Shutdown(stopCtx); err != nil {
				log.Warn("shutdown", "err", err)
			}
		}()
	}
	if injectHTTP != nil {
		sw.Add(1)
		go func() {
			defer sw.Done()
			// Requests in flight finish; then their SMTP side stops.
			if err := injectHTTP.Shutdown(stopCtx); err != nil {
				log.Warn("inject shutdown", "err", err)
			}
			if err := injectSrv.Shutdown(stopCtx); err != nil {
				log.Warn("inject shutdown", "err", err)
			}
		}()
	}
	sw.Wait()
	wg.Wait()
	stopEngine()
	if eerr := <-engineDone; eerr != nil && !errors.Is(eerr, context.Canceled) {
		log.Warn("delivery engine", "err", eerr)
	}
	stopAdmin()
	if aerr := <-adminDone; aerr != nil {
		log.Warn("admin", "err", aerr)
	}
	stopSweep()
	<-sweepDone
	st := spool.Stats()
	log.Info("stopped", "queued", spool.Len(), "commits", st.Commits, "fsyncs", st.Batches)
	return err
}

// sumStats adds up the counters of every listener's server.
func sumStats(servers []*smtp.Server) smtp.ServerStats {
	var sum smtp.ServerStats
	for _, s := range servers {
		st := s.Stats()
		sum.SessionsActive += st.SessionsActive
		sum.SessionsTotal += st.SessionsTotal
		sum.MessagesAccepted += st.MessagesAccepted
		sum.MessagesRejected += st.MessagesRejected
	}
	return sum
}

// spoolAdapter lets the server use the spool through its own Spool
// interface, and hands each committed message to the delivery engine.
type spoolAdapter struct {
	spool     *queue.Spool
	committed func(id string)
}

func (a spoolAdapter) Create(ctx context.Context) (smtp.Draft, error) {
	d, err := a.spool.Create(ctx)
	if err != nil {
		return nil, err
	}
	return kickDraft{d, a.committed}, nil
}

// kickDraft is a queue draft that calls committed after a successful commit.
type kickDraft struct {
	*queue.Draft
	committed func(id string)
}

func (d kickDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	if err := d.Draft.Commit(ctx, env, header); err != nil {
		return err
	}
	d.committed(d.ID())
	return nil
}

func loadTLS(t *config.TLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func newLogger(w io.Writer, l config.Log) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil && l.Level != "" {
		return nil, fmt.Errorf("log level %q: %w", l.Level, err)
	}
	opt := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.Format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opt)), nil
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opt)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", l.Format)
}

// kvSweepInterval is how often serve removes expired entries of the
// scripts' key-value store.
const kvSweepInterval = time.Hour

// sweepKV calls spool.KVSweep every interval until ctx is done; the
// returned channel is closed when it has stopped.
func sweepKV(ctx context.Context, spool *queue.Spool, interval time.Duration, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				log.Error("kv sweep panicked", "panic", p)
			}
		}()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				n, err := spool.KVSweep(ctx, now)
				switch {
				case err != nil && ctx.Err() == nil:
					log.Warn("kv sweep", "err", err)
				case n > 0:
					log.Debug("kv sweep", "removed", n)
				}
			}
		}
	}()
	return done
}

// startInject starts the HTTP injection endpoint when the config has one:
// an smtp.Server that never listens (inject serves its sessions over
// net.Pipe) with the first listener's limits, behind an HTTP server on
// cfg.Inject.Address. Both are nil when there is no inject block.
func startInject(cfg *config.Config, log *slog.Logger, opt smtp.Options) (*http.Server, *smtp.Server, error) {
	if cfg.Inject.Address == "" {
		return nil, nil, nil
	}
	l := cfg.Listeners[0]
	l.Name, l.Address, l.AuthRequired, l.TLS = "inject", cfg.Inject.Address, false, nil
	opt.Listener = l
	opt.Log = log.With("listener", "inject")
	srv, err := smtp.NewServer(opt)
	if err != nil {
		return nil, nil, fmt.Errorf("inject: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Inject.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("inject: %w", err)
	}
	h := inject.New(inject.Options{
		Server:   srv,
		Token:    cfg.Inject.Token,
		Hostname: cfg.Hostname,
		MaxSize:  l.MaxMessageSize*4/3 + 1<<20, // base64 in JSON, plus the document
		Log:      log.With("part", "inject"),
	})
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("inject: serving", "err", err)
		}
	}()
	log.Info("inject listening", "address", ln.Addr().String())
	return hs, srv, nil
}
