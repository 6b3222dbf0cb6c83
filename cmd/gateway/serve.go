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
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
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

// hookDeps is what the hook handlers get from the rest of the gateway.
type hookDeps struct {
	Resolver *resolver.Resolver // behind gw.dns and the plugins' DNS look-ups
	KV       lua.KV             // behind gw.kv and the plugins' KV: the spool; nil in check (their calls fail)
	Log      *slog.Logger       // the chain's, the scripts' and the plugins' logger
}

// hookSet is what buildHooks loads: the chain, what releases its
// handlers, and the transports its plugins provide, by name.
type hookSet struct {
	chain      *hook.Chain
	closers    []io.Closer
	transports map[string]delivery.Transport
	plugins    []*pluginhost.Plugin // in pipeline order, for check's report
}

// buildChain is buildHooks for callers that want only the chain and its
// closers (a plugin's transports are released with it).
func buildChain(ctx context.Context, cfg *config.Config, deps hookDeps) (*hook.Chain, []io.Closer, error) {
	set, err := buildHooks(ctx, cfg, deps)
	if err != nil {
		return nil, nil, err
	}
	return set.chain, set.closers, nil
}

// builtinTransports are the transports serve always has.
func builtinTransports() []string { return []string{"smtp", "lmtp", "maildir"} }

// buildHooks loads the handlers of cfg.Pipeline in its order, each behind
// an entry with its block's timeout, on_error and match: a lua block's
// script, compiled with its params, or a plugin block's executable,
// started, handshaken and configured with its config block (checked
// against the schema the plugin reports). It tries every handler and
// returns all failures joined, each naming file:line where the script or
// the config block is at fault; on failure it closes what it loaded. The
// closers release the handlers (and stop the plugins) once no dispatch or
// delivery uses them any more.
func buildHooks(ctx context.Context, cfg *config.Config, deps hookDeps) (*hookSet, error) {
	luaBlocks := make(map[string]config.LuaHook, len(cfg.Lua))
	for _, h := range cfg.Lua {
		luaBlocks[h.PipelineName()] = h
	}
	pluginBlocks := make(map[string]config.PluginHook, len(cfg.Plugins))
	for _, h := range cfg.Plugins {
		pluginBlocks[h.PipelineName()] = h
	}
	host := pluginhost.NewHost(deps.Resolver, deps.KV, deps.Log)
	set := &hookSet{transports: map[string]delivery.Transport{}}
	owners := map[string]string{} // transport → the plugin providing it
	var (
		entries []hook.Entry
		errs    []error
	)
	for _, name := range cfg.Pipeline {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		lh, isLua := luaBlocks[name]
		ph, isPlugin := pluginBlocks[name]
		if !isLua && !isPlugin { // config validates the pipeline
			errs = append(errs, fmt.Errorf("hook %s: no such hook block", name))
			continue
		}
		m := lh.Match
		if isPlugin {
			m = ph.Match
		}
		// The chain's per-stage table applies the stage list (Entry.Stages);
		// the matcher checks the other conditions, if any.
		var match func(*hook.Request) bool
		rest := m
		rest.Stages = nil
		if !rest.IsZero() {
			var err error
			if match, err = hook.NewMatch(rest); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				continue
			}
		}
		if isLua {
			script, err := lua.Load(lua.Options{
				Name:     lh.Name,
				Path:     lh.Path,
				Params:   lh.Params,
				Resolver: deps.Resolver,
				KV:       deps.KV,
				Log:      deps.Log,
			})
			if err != nil {
				errs = append(errs, err)
				continue
			}
			set.closers = append(set.closers, scriptCloser{script})
			entries = append(entries, hook.Entry{
				Handler: script,
				Timeout: lh.Timeout,
				OnError: hook.OnError(lh.OnError),
				Match:   match,
				Stages:  m.Stages,
			})
			continue
		}
		p, err := pluginhost.Start(ctx, pluginhost.Options{
			Name:        ph.Name,
			Path:        ph.Path,
			SHA256:      ph.SHA256,
			Log:         deps.Log,
			Host:        host,
			Config:      ph.Config,
			ConfigFile:  ph.ConfigRange.Filename,
			ConfigLine:  ph.ConfigRange.Line,
			ConfigLines: ph.ConfigLines,
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.closers = append(set.closers, p)
		set.plugins = append(set.plugins, p)
		for _, tn := range p.Transports() {
			switch {
			case slices.Contains(builtinTransports(), tn):
				errs = append(errs, fmt.Errorf("%s: its transport %q has the name of a built-in transport", name, tn))
			case owners[tn] != "":
				errs = append(errs, fmt.Errorf("%s: its transport %q is already provided by %s", name, tn, owners[tn]))
			default:
				owners[tn] = name
				set.transports[tn] = p.Transport(tn)
			}
		}
		entries = append(entries, hook.Entry{
			Handler: p,
			Timeout: ph.Timeout,
			OnError: hook.OnError(ph.OnError),
			Match:   match,
			Stages:  m.Stages,
		})
	}
	if len(errs) > 0 {
		closeAll(set.closers)
		return nil, errors.Join(errs...)
	}
	set.chain = hook.NewChain(deps.Log, entries...)
	return set, nil
}

// checkRoutes checks that every route's transport is built in or
// provided by a plugin.
func checkRoutes(routes []config.Route, plugins map[string]delivery.Transport) error {
	var errs []error
	for _, rt := range routes {
		name := rt.Transport
		if name == "" || slices.Contains(builtinTransports(), name) || plugins[name] != nil {
			continue
		}
		provided := "no plugin provides a transport"
		if len(plugins) > 0 {
			provided = "the plugins provide " + strings.Join(slices.Sorted(maps.Keys(plugins)), ", ")
		}
		errs = append(errs, fmt.Errorf("delivery: route %q: transport %q: no such transport (built in: %s; %s)",
			rt.Domain, name, strings.Join(builtinTransports(), ", "), provided))
	}
	return errors.Join(errs...)
}

// pluginTransports hands the delivery engine the plugins' transports. The
// engine's transport table is fixed when it starts, so it gets one
// liveTransport per name, which delivers through whichever plugin
// provides that name now: a reload swaps in the new plugins' set.
type pluginTransports struct {
	names []string // the names the engine has, sorted
	cur   atomic.Pointer[map[string]delivery.Transport]
}

func newPluginTransports(m map[string]delivery.Transport) *pluginTransports {
	pt := &pluginTransports{names: slices.Sorted(maps.Keys(m))}
	pt.cur.Store(&m)
	return pt
}

// started returns the transport names the engine started with.
func (pt *pluginTransports) started() []string { return pt.names }

// swap makes m the current set.
func (pt *pluginTransports) swap(m map[string]delivery.Transport) {
	pt.cur.Store(&m)
}

func (pt *pluginTransports) get(name string) delivery.Transport {
	if m := pt.cur.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

// transport returns the engine's transport for name.
func (pt *pluginTransports) transport(name string) delivery.Transport {
	return &liveTransport{set: pt, name: name}
}

// liveTransport delivers through the plugin that provides name now.
type liveTransport struct {
	set  *pluginTransports
	name string
}

func (t *liveTransport) Deliver(ctx context.Context, job *delivery.Job) []delivery.Result {
	if tr := t.set.get(t.name); tr != nil {
		return tr.Deliver(ctx, job)
	}
	res := make([]delivery.Result, len(job.Recipients))
	for i := range res {
		res[i] = delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 5},
			Text: fmt.Sprintf("no plugin provides transport %q since the last reload", t.name)}
	}
	return res
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
// Only the hook pipeline (pipeline, the lua and the plugin blocks) is
// reloaded: listeners, domains, relay, auth, delivery, admin and the rest
// need a restart, and a reload that finds them changed says so in the log.
// Every plugin is started again: its new process serves the new chain
// (and the delivery engine's plugin transports), the old one stops with
// the old chain's handlers.
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

	// transports are the plugin transports the delivery engine uses; a
	// reload swaps in the new plugins'. Nil = none (tests).
	transports *pluginTransports

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
		var set *hookSet
		if set, err = r.build(ctx, cfg); err == nil {
			old := r.live.Swap(set.chain)
			if r.transports != nil {
				r.transports.swap(set.transports)
			}
			r.retire(old, r.current)
			r.current = set.closers
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

// build loads cfg's hooks for a reload. The routes are the running
// configuration's (delivery is not reloaded): a reload whose plugins no
// longer provide a transport a route uses is refused. Plugin transports
// the engine did not start with are usable only after a restart.
func (r *hookReloader) build(ctx context.Context, cfg *config.Config) (*hookSet, error) {
	set, err := buildHooks(ctx, cfg, r.deps)
	if err != nil {
		return nil, err
	}
	if err := checkRoutes(r.running.Delivery.Routes, set.transports); err != nil {
		closeAll(set.closers)
		return nil, err
	}
	if r.transports != nil {
		started := r.transports.started()
		for name := range set.transports {
			if !slices.Contains(started, name) {
				r.log.Warn("a plugin provides a new transport; restart to deliver with it", "transport", name)
			}
		}
	}
	return set, nil
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
