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
// blocks), delivery's hold_domains, the dkim blocks (their keys read
// again) and the listeners' certificate files (read again at the paths
// the gateway started with) are reloaded: listeners, domains, relay, auth,
// delivery, admin and the rest need a restart, and a reload that finds
// them changed says so in the log. Every plugin is started again: its new process serves the new
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
	// applied, when set, takes what a reload changes outside the
	// pipeline (delivery's hold_domains, the dkim keys) from the
	// reloaded configuration.
	applied func(ctx context.Context, cfg *config.Config) error

	mu      sync.Mutex // serializes reloads; guards current and closed
	current []io.Closer
	closed  bool

	stop    chan struct{}  // closed by close: retirements end at once
	retired sync.WaitGroup // the retirements running
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
		stop:       make(chan struct{}),
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
			oldTransports := p.transports.swap(set.transports)
			p.retire(old, oldTransports, p.current)
			p.current = set.closers
			p.log.Info("reloaded the hook pipeline", "file", p.running.File, "pipeline", strings.Join(cfg.Pipeline, " "))
			if changed := restartSections(p.running, cfg); len(changed) > 0 {
				p.log.Warn("reload applies only pipeline, the hook blocks, delivery's hold_domains, dkim and the certificate files; restart to apply the rest",
					"changed", strings.Join(changed, " "))
			}
			if p.applied != nil {
				if err := p.applied(ctx, cfg); err != nil {
					p.log.Error("reload: the pipeline is reloaded, but not all the rest", "err", err)
					return fmt.Errorf("reload: the pipeline is reloaded, but %w", err)
				}
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

// retire closes closers, the handlers of old, once nothing can still be
// using them: after the longest a dispatch on old can take plus the
// grace, and once no delivery through old's plugin transports is still
// running (a transport call has no deadline of its own: a webhook POST
// may take its time, and killing its plugin would send it twice). A stop
// of the gateway cuts the wait short: by then the engine has stopped.
func (p *pipeline) retire(old *hook.Chain, transports *transportSet, closers []io.Closer) {
	if len(closers) == 0 {
		return
	}
	grace := p.grace
	if grace <= 0 {
		grace = minRetireGrace
	}
	wait := old.MaxDuration(time.Minute) + grace
	p.retired.Go(func() {
		defer func() {
			if r := recover(); r != nil {
				p.log.Error("closing replaced hooks panicked", "panic", r)
			}
		}()
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			transports.idle(p.stop)
		case <-p.stop:
		}
		closeAll(closers)
	})
}

// close releases every handler, current and retired, and waits for the
// retirements to end: call it once no dispatch or delivery can run any
// more. Later reloads fail.
func (p *pipeline) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	current := p.current
	p.current = nil
	p.mu.Unlock()
	p.retired.Wait()
	closeAll(current)
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
		{"delivery", withoutHolds(running.Delivery), withoutHolds(loaded.Delivery)},
		{"admin", running.Admin, loaded.Admin},
		{"inject", running.Inject, loaded.Inject},
		{"authentication", running.Authentication, loaded.Authentication},
		{"cluster", running.Cluster, loaded.Cluster},
	}
	var changed []string
	for _, s := range sections {
		if !reflect.DeepEqual(s.a, s.b) {
			changed = append(changed, s.name)
		}
	}
	return changed
}

// withoutHolds is d without what a reload applies: hold_domains.
func withoutHolds(d config.Delivery) config.Delivery {
	d.HoldDomains = nil
	return d
}

// pluginTransports hands the delivery engine the plugins' transports. The
// engine's transport table is fixed when it starts, so it gets one
// liveTransport per name, which delivers through whichever plugin
// provides that name now: a reload swaps in the new plugins' set.
type pluginTransports struct {
	names []string // the names the engine has, sorted
	cur   atomic.Pointer[transportSet]
}

// transportSet is the transports of one hook set and the deliveries
// running through them.
type transportSet struct {
	m map[string]delivery.Transport

	mu     sync.Mutex
	active int
	done   chan struct{} // closed when active falls to 0; nil while 0
}

func newPluginTransports(m map[string]delivery.Transport) *pluginTransports {
	pt := &pluginTransports{names: slices.Sorted(maps.Keys(m))}
	pt.cur.Store(&transportSet{m: m})
	return pt
}

// swap makes m the current set and returns the one it replaces.
func (pt *pluginTransports) swap(m map[string]delivery.Transport) *transportSet {
	return pt.cur.Swap(&transportSet{m: m})
}

// add puts one liveTransport per name the engine starts with into m.
func (pt *pluginTransports) add(m map[string]delivery.Transport) {
	for _, name := range pt.names {
		m[name] = &liveTransport{set: pt, name: name}
	}
}

// begin counts a delivery through ts.
func (ts *transportSet) begin() {
	ts.mu.Lock()
	ts.active++
	ts.mu.Unlock()
}

// end counts one delivery through ts as finished.
func (ts *transportSet) end() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.active--; ts.active == 0 && ts.done != nil {
		close(ts.done)
		ts.done = nil
	}
}

// idle waits until no delivery runs through ts, or stop is closed.
func (ts *transportSet) idle(stop <-chan struct{}) {
	ts.mu.Lock()
	if ts.active == 0 {
		ts.mu.Unlock()
		return
	}
	if ts.done == nil {
		ts.done = make(chan struct{})
	}
	done := ts.done
	ts.mu.Unlock()
	select {
	case <-done:
	case <-stop:
	}
}

// liveTransport delivers through the plugin that provides name now.
type liveTransport struct {
	set  *pluginTransports
	name string
}

func (t *liveTransport) Deliver(ctx context.Context, job *delivery.Job) []delivery.Result {
	ts := t.set.cur.Load()
	ts.begin()
	defer ts.end()
	if tr := ts.m[t.name]; tr != nil {
		return tr.Deliver(ctx, job)
	}
	res := make([]delivery.Result, len(job.Recipients))
	for i := range res {
		res[i] = delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 5},
			Text: fmt.Sprintf("no plugin provides transport %q since the last reload", t.name), Local: true}
	}
	return res
}
