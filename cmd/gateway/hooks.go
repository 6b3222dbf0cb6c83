// This file builds the hook pipeline from the config (Lua scripts and
// plugins), and reloads it on SIGHUP or POST /v1/reload.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

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
