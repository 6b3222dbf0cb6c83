package gateway

// This file is the pipeline's live reload: build the new chain, swap it in,
// retire the old one once nothing can still run on it (Caddy's run the new
// config, swap, stop the old).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// minRetireGrace is the least time a replaced chain's handlers stay open
// after a reload (see pipeline.retire).
const minRetireGrace = 30 * time.Second

// pipeline is the running hook pipeline: the chain behind a hook.Live that
// every SMTP server and the delivery engine dispatch on, the plugin
// transports the engine delivers through, and what releases them.
//
// reload reads the configuration file again, loads every handler of its
// pipeline, and only if all of that succeeds swaps the new chain in. On
// any failure (a config diagnostic, a script that does not compile) the
// running chain stays and the error, naming file:line, is logged and
// returned. Only the hook pipeline (pipeline, the lua and the plugin
// blocks) is reloaded: listeners, domains, relay, auth, delivery, admin and
// the rest need a restart, and a reload that finds them changed says so in
// the log. Every plugin is started again: its new process serves the new
// chain (and the engine's plugin transports), the old one stops with the
// old chain's handlers.
//
// A replaced chain may still be running dispatches that loaded it just
// before the swap, so its handlers are closed only after a grace period:
// the longest a dispatch on it can take (the sum of its handlers'
// timeouts) plus minRetireGrace. Those left at shutdown are closed by
// close, once the servers and the engine have stopped.
type pipeline struct {
	running    *config.Config // the configuration the gateway started with
	deps       hookDeps
	live       *hook.Live
	transports *pluginTransports
	log        *slog.Logger
	grace      time.Duration // 0 = minRetireGrace (tests shorten it)

	mu      sync.Mutex // serializes reloads; guards the fields below
	current []io.Closer
	retired map[*time.Timer][]io.Closer // closers waiting for their timer
	closed  bool
}

// newPipeline builds cfg's pipeline. A route naming a transport no plugin
// provides is an error: plugin transports are known only once the plugins
// run.
func newPipeline(ctx context.Context, cfg *config.Config, deps hookDeps) (*pipeline, error) {
	set, err := buildHooks(ctx, cfg, deps)
	if err != nil {
		return nil, err
	}
	if err := checkRoutes(cfg.Delivery.Routes, set.transports); err != nil {
		set.close()
		return nil, err
	}
	if set.chain.Len() > 0 {
		deps.Log.Info("hooks loaded", "pipeline", strings.Join(cfg.Pipeline, " "))
	}
	return &pipeline{
		running:    cfg,
		deps:       deps,
		live:       hook.NewLive(set.chain),
		transports: newPluginTransports(set.transports),
		log:        deps.Log,
		current:    set.closers,
	}, nil
}

// reload is the admin API's Options.Reload and what SIGHUP does.
func (p *pipeline) reload(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("reload: the gateway is stopping")
	}
	if p.running.File == "" {
		return errors.New("reload: the configuration was not loaded from a file")
	}
	cfg, err := config.Load(p.running.File)
	if err == nil {
		var set *hookSet
		if set, err = p.build(ctx, cfg); err == nil {
			old := p.live.Swap(set.chain)
			p.transports.swap(set.transports)
			p.retire(old, p.current)
			p.current = set.closers
			p.log.Info("reloaded the hook pipeline", "file", p.running.File, "pipeline", strings.Join(cfg.Pipeline, " "))
			if changed := restartSections(p.running, cfg); len(changed) > 0 {
				p.log.Warn("reload applies only pipeline and the hook blocks; restart to apply the rest",
					"changed", strings.Join(changed, " "))
			}
			return nil
		}
	}
	p.log.Error("reload failed; the running hooks stay", "file", p.running.File, "err", err)
	return fmt.Errorf("reload: %w", err)
}

// build loads cfg's hooks for a reload. The routes are the running
// configuration's (delivery is not reloaded): a reload whose plugins no
// longer provide a transport a route uses is refused. Plugin transports
// the engine did not start with are usable only after a restart.
func (p *pipeline) build(ctx context.Context, cfg *config.Config) (*hookSet, error) {
	set, err := buildHooks(ctx, cfg, p.deps)
	if err != nil {
		return nil, err
	}
	if err := checkRoutes(p.running.Delivery.Routes, set.transports); err != nil {
		set.close()
		return nil, err
	}
	for name := range set.transports {
		if !slices.Contains(p.transports.names, name) {
			p.log.Warn("a plugin provides a new transport; restart to deliver with it", "transport", name)
		}
	}
	return set, nil
}

// retire closes closers, the handlers of old, once no dispatch can still
// be using them. Call with p.mu held.
func (p *pipeline) retire(old *hook.Chain, closers []io.Closer) {
	if len(closers) == 0 {
		return
	}
	if p.retired == nil {
		p.retired = make(map[*time.Timer][]io.Closer)
	}
	grace := p.grace
	if grace <= 0 {
		grace = minRetireGrace
	}
	var t *time.Timer
	t = time.AfterFunc(old.MaxDuration(time.Minute)+grace, func() {
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("closing replaced hooks panicked", "panic", r)
			}
		}()
		p.mu.Lock()
		cs, ok := p.retired[t]
		delete(p.retired, t)
		p.mu.Unlock()
		if ok {
			closeAll(cs)
		}
	})
	p.retired[t] = closers
}

// close releases every handler, current and retired: call it once no
// dispatch can run any more. Later reloads fail.
func (p *pipeline) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for t, cs := range p.retired {
		t.Stop()
		closeAll(cs)
	}
	p.retired = nil
	closeAll(p.current)
	p.current = nil
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
		{"inject", running.Inject, loaded.Inject},
	}
	var changed []string
	for _, s := range sections {
		if !reflect.DeepEqual(s.a, s.b) {
			changed = append(changed, s.name)
		}
	}
	return changed
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

// swap makes m the current set.
func (pt *pluginTransports) swap(m map[string]delivery.Transport) { pt.cur.Store(&m) }

// get returns the current transport called name, nil if none.
func (pt *pluginTransports) get(name string) delivery.Transport { return (*pt.cur.Load())[name] }

// add puts one liveTransport per name the engine starts with into m.
func (pt *pluginTransports) add(m map[string]delivery.Transport) {
	for _, name := range pt.names {
		m[name] = &liveTransport{set: pt, name: name}
	}
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
