package gateway

// This file builds the hook pipeline from the config: one hook.Entry per
// pipeline name, a Lua script or a started plugin, with its block's
// timeout, on_error and match, and the transports the plugins provide.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/pluginhost"
)

// hookDeps is what the hook handlers get from the rest of the gateway.
type hookDeps struct {
	// Services are the host services of every script and plugin (DNS, the
	// durable store, the spool, and the ephemeral one, logging), built
	// once so that a reload keeps the ephemeral store.
	Services *hostsvc.Services
	Log      *slog.Logger // the chain's, the scripts' and the plugins' logger
}

// hookSet is what buildHooks loads: the chain, what releases its
// handlers, and the transports its plugins provide, by name.
type hookSet struct {
	chain      *hook.Chain
	closers    []io.Closer
	transports map[string]delivery.Transport
	plugins    []*pluginhost.Plugin // in pipeline order, for Check's report
	// pluginFailed: a plugin did not start, so the transports it would
	// provide are unknown (Check leaves the routes alone then).
	pluginFailed bool
}

// close releases every handler of the set, once.
func (s *hookSet) close() {
	closeAll(s.closers)
	s.closers = nil
}

// builtinTransports are the transports a gateway always has.
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
	b := hookBuilder{
		deps:    deps,
		set:     &hookSet{transports: map[string]delivery.Transport{}},
		owners:  map[string]string{},
		lua:     make(map[string]config.LuaHook, len(cfg.Lua)),
		plugins: make(map[string]config.PluginHook, len(cfg.Plugins)),
	}
	for _, h := range cfg.Lua {
		b.lua[h.PipelineName()] = h
	}
	for _, h := range cfg.Plugins {
		b.plugins[h.PipelineName()] = h
	}
	var entries []hook.Entry
	for _, name := range cfg.Pipeline {
		if err := ctx.Err(); err != nil {
			b.errs = append(b.errs, err)
			break
		}
		if e, ok := b.entry(ctx, name); ok {
			entries = append(entries, e)
		}
	}
	if len(b.errs) > 0 {
		// The set is returned, closed, for Check: the transports the
		// plugins that started provide, and whether one failed.
		b.set.close()
		return b.set, errors.Join(b.errs...)
	}
	b.set.chain = hook.NewChain(deps.Log, entries...)
	return b.set, nil
}

// hookBuilder is buildHooks' state: the blocks by pipeline name, what it
// has loaded so far, and the failures.
type hookBuilder struct {
	deps    hookDeps
	set     *hookSet
	owners  map[string]string // transport → the plugin providing it
	lua     map[string]config.LuaHook
	plugins map[string]config.PluginHook
	errs    []error
}

// entry loads the handler called name; false when it failed (the failure
// is in b.errs).
func (b *hookBuilder) entry(ctx context.Context, name string) (hook.Entry, bool) {
	lh, isLua := b.lua[name]
	ph, isPlugin := b.plugins[name]
	if !isLua && !isPlugin { // config validates the pipeline
		b.errs = append(b.errs, fmt.Errorf("hook %s: no such hook block", name))
		return hook.Entry{}, false
	}
	m := lh.Match
	if isPlugin {
		m = ph.Match
	}
	match, err := matcher(m)
	if err != nil {
		b.errs = append(b.errs, fmt.Errorf("%s: %w", name, err))
		return hook.Entry{}, false
	}
	if isLua {
		h, err := b.loadLua(lh)
		if err != nil {
			b.errs = append(b.errs, err)
			return hook.Entry{}, false
		}
		return hook.Entry{Handler: h, Timeout: lh.Timeout, OnError: hook.OnError(lh.OnError), Match: match, Stages: m.Stages}, true
	}
	p, err := b.startPlugin(ctx, ph)
	if err != nil {
		b.errs = append(b.errs, err)
		b.set.pluginFailed = true
		return hook.Entry{}, false
	}
	return hook.Entry{Handler: p, Timeout: ph.Timeout, OnError: hook.OnError(ph.OnError), Match: match, Stages: m.Stages}, true
}

// matcher returns the function that checks m's conditions other than its
// stage list (the chain's per-stage table applies that, through
// Entry.Stages); nil when there are none.
func matcher(m config.Match) (func(*hook.Request) bool, error) {
	m.Stages = nil
	if m.IsZero() {
		return nil, nil
	}
	return hook.NewMatch(m)
}

// loadLua compiles a lua block's script.
func (b *hookBuilder) loadLua(h config.LuaHook) (*lua.Script, error) {
	s, err := lua.Load(lua.Options{
		Name:      h.Name,
		Path:      h.Path,
		Params:    h.Params,
		Services:  b.deps.Services,
		Log:       b.deps.Log,
		MaxMemory: int(h.MaxMemory),
	})
	if err != nil {
		return nil, err
	}
	b.set.closers = append(b.set.closers, scriptCloser{s})
	return s, nil
}

// startPlugin starts a plugin block's executable and takes the transports
// it provides.
func (b *hookBuilder) startPlugin(ctx context.Context, h config.PluginHook) (*pluginhost.Plugin, error) {
	p, err := pluginhost.Start(ctx, pluginhost.Options{
		Name:        h.Name,
		Path:        h.Path,
		SHA256:      h.SHA256,
		Log:         b.deps.Log,
		Services:    b.deps.Services,
		Config:      h.Config,
		ConfigFile:  h.ConfigRange.Filename,
		ConfigLine:  h.ConfigRange.Line,
		ConfigLines: h.ConfigLines,
	})
	if errors.Is(err, pluginhost.ErrChecksum) {
		return nil, fmt.Errorf("%s: %w", h.SHA256Range, err)
	}
	if err != nil {
		return nil, err
	}
	b.set.closers = append(b.set.closers, p)
	b.set.plugins = append(b.set.plugins, p)
	name := h.PipelineName()
	for _, tn := range p.Transports() {
		switch {
		case slices.Contains(builtinTransports(), tn):
			b.errs = append(b.errs, fmt.Errorf("%s: its transport %q has the name of a built-in transport", name, tn))
		case b.owners[tn] != "":
			b.errs = append(b.errs, fmt.Errorf("%s: its transport %q is already provided by %s", name, tn, b.owners[tn]))
		default:
			b.owners[tn] = name
			b.set.transports[tn] = p.Transport(tn)
		}
	}
	return p, nil
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
		errs = append(errs, fmt.Errorf("%s: delivery: route %q: transport %q: no such transport (built in: %s; %s)",
			rt.TransportRange, rt.Domain, name, strings.Join(builtinTransports(), ", "), provided))
	}
	return errors.Join(errs...)
}

// scriptCloser adapts a script's Close to io.Closer.
type scriptCloser struct{ s *lua.Script }

func (c scriptCloser) Close() error { c.s.Close(); return nil }

func closeAll(cs []io.Closer) {
	for _, c := range cs {
		c.Close()
	}
}
