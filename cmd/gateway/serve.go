package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
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
	chain, closers, err := buildChain(ctx, cfg, deps)
	if err != nil {
		return err
	}
	hooks := hook.NewLive(chain)
	reloader := &hookReloader{
		file:    cfg.File,
		running: cfg,
		deps:    deps,
		live:    hooks,
		current: closers,
		log:     log.With("part", "reload"),
	}
	defer reloader.close() // after the servers and the engine stop, before the spool closes
	if chain.Len() > 0 {
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

// hookDeps is what the hook handlers get from the rest of the gateway.
type hookDeps struct {
	Resolver *resolver.Resolver // behind gw.dns
	KV       lua.KV             // behind gw.kv: the spool; nil in check (gw.kv calls fail)
	Log      *slog.Logger       // the chain's and the scripts' logger
}

// buildChain loads the handlers of cfg.Pipeline in its order: each lua
// block's script, compiled with its params, behind an entry with the
// block's timeout, on_error and match. It tries every handler and returns
// all failures joined, each naming the script's file:line where the
// script is at fault; on failure it closes what it loaded. The closers
// release the handlers once no dispatch uses the chain any more.
func buildChain(ctx context.Context, cfg *config.Config, deps hookDeps) (*hook.Chain, []io.Closer, error) {
	blocks := make(map[string]config.LuaHook, len(cfg.Lua))
	for _, h := range cfg.Lua {
		blocks[h.PipelineName()] = h
	}
	var (
		entries []hook.Entry
		closers []io.Closer
		errs    []error
	)
	for _, name := range cfg.Pipeline {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		h, ok := blocks[name]
		if !ok { // config validates the pipeline; plugins are not built yet
			errs = append(errs, fmt.Errorf("hook %s: no such hook block", name))
			continue
		}
		// The chain's per-stage table applies the stage list (Entry.Stages);
		// the matcher checks the other conditions, if any.
		var match func(*hook.Request) bool
		rest := h.Match
		rest.Stages = nil
		if !rest.IsZero() {
			var err error
			if match, err = hook.NewMatch(rest); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
		}
		script, err := lua.Load(lua.Options{
			Name:     h.Name,
			Path:     h.Path,
			Params:   h.Params,
			Resolver: deps.Resolver,
			KV:       deps.KV,
			Log:      deps.Log,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		closers = append(closers, scriptCloser{script})
		entries = append(entries, hook.Entry{
			Handler: script,
			Timeout: h.Timeout,
			OnError: hook.OnError(h.OnError),
			Match:   match,
			Stages:  h.Match.Stages,
		})
	}
	if len(errs) > 0 {
		closeAll(closers)
		return nil, nil, errors.Join(errs...)
	}
	return hook.NewChain(deps.Log, entries...), closers, nil
}

// scriptCloser adapts a script's Close to io.Closer.
type scriptCloser struct{ s *lua.Script }

func (c scriptCloser) Close() error { c.s.Close(); return nil }

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}

// minRetireGrace is the least time a replaced chain's handlers stay open
// after a reload (see hookReloader.retire).
const minRetireGrace = 30 * time.Second

// hookReloader replaces the hook chain behind a hook.Live when asked to
// (SIGHUP, POST /v1/reload): it reads the configuration file again, loads
// every handler of its pipeline, and only if all of that succeeds swaps the
// new chain in. On any failure (a config diagnostic, a script that does
// not compile) the running chain stays and the error, naming file:line, is
// logged and returned.
//
// Only the hook pipeline (pipeline and the lua blocks) is reloaded:
// listeners, domains, relay, auth, delivery, admin and the rest need a
// restart, and a reload that finds them changed says so in the log.
//
// A replaced chain may still be running dispatches that loaded it just
// before the swap, so its handlers are closed only after a grace period:
// the longest a dispatch on it can take (the sum of its handlers'
// timeouts) plus minRetireGrace. Those left at shutdown are closed by
// close, once the servers and the engine have stopped.
type hookReloader struct {
	file    string         // the configuration file; "" = reload is not possible
	running *config.Config // the configuration serve started with
	deps    hookDeps
	live    *hook.Live
	log     *slog.Logger
	grace   time.Duration // 0 = minRetireGrace (tests shorten it)

	mu      sync.Mutex // serializes reloads; guards the fields below
	current []io.Closer
	retired map[*time.Timer][]io.Closer // closers waiting for their timer
	closed  bool
}

// reload is the admin API's Options.Reload and the SIGHUP action.
func (r *hookReloader) reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("reload: the gateway is stopping")
	}
	if r.file == "" {
		return errors.New("reload: the configuration was not loaded from a file")
	}
	cfg, err := config.Load(r.file)
	if err == nil {
		var chain *hook.Chain
		var closers []io.Closer
		if chain, closers, err = buildChain(ctx, cfg, r.deps); err == nil {
			old := r.live.Swap(chain)
			r.retire(old, r.current)
			r.current = closers
			r.log.Info("reloaded the hook pipeline", "file", r.file, "pipeline", strings.Join(cfg.Pipeline, " "))
			if changed := restartSections(r.running, cfg); len(changed) > 0 {
				r.log.Warn("reload applies only pipeline and the hook blocks; restart to apply the rest",
					"changed", strings.Join(changed, " "))
			}
			return nil
		}
	}
	r.log.Error("reload failed; the running hooks stay", "file", r.file, "err", err)
	return fmt.Errorf("reload: %w", err)
}

// retire closes closers, the handlers of old, once no dispatch can still
// be using them. Call with r.mu held.
func (r *hookReloader) retire(old *hook.Chain, closers []io.Closer) {
	if len(closers) == 0 {
		return
	}
	if r.retired == nil {
		r.retired = make(map[*time.Timer][]io.Closer)
	}
	grace := r.grace
	if grace <= 0 {
		grace = minRetireGrace
	}
	var t *time.Timer
	t = time.AfterFunc(old.MaxDuration(time.Minute)+grace, func() {
		defer func() {
			if p := recover(); p != nil {
				r.log.Error("closing replaced hooks panicked", "panic", p)
			}
		}()
		r.mu.Lock()
		cs, ok := r.retired[t]
		delete(r.retired, t)
		r.mu.Unlock()
		if ok {
			closeAll(cs)
		}
	})
	r.retired[t] = closers
}

// close releases every handler, current and retired: call it once no
// dispatch can run any more. Later reloads fail.
func (r *hookReloader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for t, cs := range r.retired {
		t.Stop()
		closeAll(cs)
	}
	r.retired = nil
	closeAll(r.current)
	r.current = nil
}

// onSIGHUP reloads on every SIGHUP until ctx is done; the returned channel
// is closed when it has stopped listening.
func (r *hookReloader) onSIGHUP(ctx context.Context) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				r.log.Info("SIGHUP: reloading the hook pipeline")
				r.reloadLogged(ctx)
			}
		}
	}()
	return done
}

// reloadLogged reloads, turning a panic into a logged error (reload logs
// its own failures).
func (r *hookReloader) reloadLogged(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("reload panicked", "panic", p)
		}
	}()
	r.reload(ctx)
}

// restartSections names the settings outside the hook pipeline that differ
// between the running configuration and a reloaded one.
func restartSections(running, loaded *config.Config) []string {
	sections := []struct {
		name string
		a, b any
	}{
		{"hostname", running.Hostname, loaded.Hostname},
		{"data_dir", running.DataDir, loaded.DataDir},
		{"shutdown_timeout", running.ShutdownTimeout, loaded.ShutdownTimeout},
		{"log", running.Log, loaded.Log},
		{"listener", running.Listeners, loaded.Listeners},
		{"domains", running.Domains, loaded.Domains},
		{"relay", running.Relay, loaded.Relay},
		{"auth", running.Auth, loaded.Auth},
		{"delivery", running.Delivery, loaded.Delivery},
		{"admin", running.Admin, loaded.Admin},
	}
	var changed []string
	for _, s := range sections {
		if !reflect.DeepEqual(s.a, s.b) {
			changed = append(changed, s.name)
		}
	}
	return changed
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
