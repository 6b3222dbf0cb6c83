package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/plugins/internal/expn"
	"github.com/mailgate/gateway/plugins/internal/srs"
	"github.com/mailgate/gateway/sdk"
)

const (
	name    = "aliases"
	version = "0.1.0"

	// maxDepth is how many aliases deep an expansion may go (an alias
	// whose target is an alias whose target is …).
	maxDepth = 10
)

// Errors of an expansion; the rcpt and EXPN answers depend on them.
var (
	ErrLoop     = errors.New("aliases: alias loop")
	ErrTooDeep  = errors.New("aliases: aliases nested too deep")
	errNotFound = errors.New("aliases: not an alias")
)

// Aliases forwards mail for the aliases of Postfix aliases(5) and
// virtual(5) files: a recipient with an alias is accepted and replaced by
// its targets, expanded recursively.
type Aliases struct {
	now func() time.Time // the clock; tests replace it

	table atomic.Pointer[table]

	mu        sync.Mutex // guards everything below; held while reloading
	cfg       config
	host      sdk.Host
	lastCheck time.Time
}

// New returns an unconfigured Aliases: no aliases until Configure.
func New() *Aliases {
	p := &Aliases{now: time.Now}
	p.table.Store(&table{})
	return p
}

func (p *Aliases) Info() sdk.Info {
	return sdk.Info{Name: name, Version: version, Schema: schema()}
}

// Configure parses the config block and reads the files; a file that
// cannot be read or parsed is a config error of the setting naming it.
func (p *Aliases) Configure(ctx context.Context, m map[string]any, host sdk.Host) error {
	c, err := parseConfig(m)
	if err != nil {
		return err
	}
	t, field, err := loadFiles(c.aliasesFile, c.virtualFile, c.domain)
	if err != nil {
		return sdk.ConfigErrors{{Field: field, Message: err.Error()}}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.host, p.lastCheck = c, host, p.now()
	p.table.Store(t)
	p.logWarnings(ctx, t)
	return nil
}

// Rcpt accepts a recipient that has an alias and replaces it by the
// targets; other recipients continue. An alias loop or one nested too
// deep is refused with 550 5.4.6. With SRS, a recipient that is an SRS
// address of ours is first replaced by the original sender it stands for
// (a bounce coming back), or refused with 550 5.1.1 when it is forged or
// too old.
func (p *Aliases) Rcpt(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	if r.Rcpt == nil {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	addr := r.Rcpt.Address.String()
	if d, eff, ok := p.reverseSRS(addr); ok {
		return d, eff, nil
	}
	targets, err := p.targets(ctx, addr)
	if d, ok := failure(addr, err); ok {
		return d, sdk.Effects{}, nil
	}
	eff := sdk.Effects{Recipients: make([]sdk.Address, len(targets))}
	for i, t := range targets {
		eff.Recipients[i] = address.Split(t)
	}
	d := sdk.AcceptDecision().WithReason(fmt.Sprintf("aliases: %s expands to %s", addr, strings.Join(targets, ", ")))
	return d, eff, nil
}

// reverseSRS answers a recipient that is an SRS address of ours (ok), or
// says it is none.
func (p *Aliases) reverseSRS(addr string) (sdk.Decision, sdk.Effects, bool) {
	p.mu.Lock()
	rw := p.cfg.srs
	p.mu.Unlock()
	if rw == nil {
		return sdk.Decision{}, sdk.Effects{}, false
	}
	orig, err := rw.Reverse(addr, p.now())
	switch {
	case errors.Is(err, srs.ErrNotSRS):
		return sdk.Decision{}, sdk.Effects{}, false
	case err != nil:
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "Invalid SRS address").
			WithReason(fmt.Sprintf("aliases: %s: %v", addr, err)), sdk.Effects{}, true
	}
	d := sdk.AcceptDecision().WithReason("aliases: SRS address " + addr + " leads back to " + orig)
	return d, sdk.Effects{Recipients: []sdk.Address{address.Split(orig)}}, true
}

// Data rewrites the envelope sender with SRS when the message is forwarded
// out of the local domains: when a recipient is outside them and some
// alias has it among its targets. A null sender, a local one and one
// already in srs_domain stay. It always continues.
func (p *Aliases) Data(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	p.mu.Lock()
	rw, local := p.cfg.srs, p.cfg.local
	p.mu.Unlock()
	if rw == nil || r.Txn == nil || r.Txn.Sender == (sdk.Address{}) {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	t := p.table.Load()
	if local == nil {
		local = t.keyDomains
	}
	sender := r.Txn.Sender
	if d := strings.ToLower(sender.Domain); local[d] || d == rw.Domain {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	for _, rc := range r.Txn.Recipients {
		if d := strings.ToLower(rc.Address.Domain); !local[d] && t.forwardsTo(rc.Address, d) {
			a := address.Split(rw.Forward(sender.Local, sender.Domain, p.now()))
			d := sdk.ContinueDecision().WithReason("aliases: forwarded to " + rc.Address.String() + ": SRS sender " + a.String())
			return d, sdk.Effects{Sender: &a}, nil
		}
	}
	return sdk.ContinueDecision(), sdk.Effects{}, nil
}

// Command answers EXPN of an alias with its targets, one a line, to the
// clients the expn settings trust. Names without @ are taken to be of
// the domain.
func (p *Aliases) Command(ctx context.Context, r *sdk.Request) (sdk.Decision, sdk.Effects, error) {
	if !strings.EqualFold(r.Command, "EXPN") {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	p.mu.Lock()
	policy, domain := p.cfg.expn, p.cfg.domain
	p.mu.Unlock()
	addr := expn.Address(r.Arg, domain)
	if !policy.Allows(r.Session) || addr == "" {
		return sdk.ContinueDecision(), sdk.Effects{}, nil
	}
	targets, err := p.targets(ctx, addr)
	if d, ok := failure(addr, err); ok {
		return d, sdk.Effects{}, nil
	}
	eff := sdk.Effects{ReplyLines: make([]string, len(targets))}
	for i, t := range targets {
		eff.ReplyLines[i] = "<" + t + ">"
	}
	return sdk.AcceptDecision().WithReason("aliases: EXPN " + addr), eff, nil
}

// targets returns the final targets of addr, or errNotFound when it has
// no alias or one whose only target is itself (`name: name`: nothing to
// rewrite, no opinion).
func (p *Aliases) targets(ctx context.Context, addr string) ([]string, error) {
	targets, err := p.expand(ctx, addr)
	if err == nil && len(targets) == 1 && strings.EqualFold(targets[0], addr) {
		return nil, errNotFound
	}
	return targets, err
}

// failure turns an expansion error into the decision to return (ok), or
// says there is none: the address is no alias, so the hook continues.
func failure(addr string, err error) (sdk.Decision, bool) {
	switch {
	case err == nil:
		return sdk.Decision{}, false
	case errors.Is(err, ErrLoop):
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 4, 6}, "Alias loop detected").WithReason(err.Error()), true
	case errors.Is(err, ErrTooDeep):
		return sdk.RejectDecision(550, sdk.EnhancedCode{5, 4, 6}, "Alias expansion too deep").WithReason(err.Error()), true
	}
	return sdk.ContinueDecision(), true // errNotFound
}

// expand returns the final targets of addr, deduplicated, in the order
// first met, or errNotFound when addr has no alias.
func (p *Aliases) expand(ctx context.Context, addr string) ([]string, error) {
	p.maybeReload(ctx)
	return p.table.Load().expand(addr)
}

// lookup finds the targets of addr: a virtual(5) address entry first, then
// an aliases(5) name, then a virtual(5) @domain catch-all.
func (t *table) lookup(addr string) ([]target, bool) {
	key := strings.ToLower(addr)
	if ts, ok := t.virtual[key]; ok {
		return ts, true
	}
	if ts, ok := t.aliases[key]; ok {
		return ts, true
	}
	_, domain, _ := address.Cut(key)
	ts, ok := t.catchAll[domain]
	return ts, ok
}

// expand follows aliases from addr depth first. A target equal to the
// address it is a target of is kept as it is (Postfix: `name: name, other`
// delivers to name itself); any other return to an address on the path
// is a loop.
func (t *table) expand(addr string) ([]string, error) {
	if _, ok := t.lookup(addr); !ok {
		return nil, errNotFound
	}
	var (
		out  []string
		seen = map[string]bool{} // final targets, lower case
		done = map[string]bool{} // aliases already expanded, lower case
	)
	add := func(a string) {
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	var walk func(a string, path []string) error
	walk = func(a string, path []string) error {
		key := strings.ToLower(a)
		targets, ok := t.lookup(a)
		if !ok {
			add(a)
			return nil
		}
		for _, p := range path {
			if p == key {
				return fmt.Errorf("%w: %s -> %s", ErrLoop, strings.Join(path, " -> "), key)
			}
		}
		if done[key] {
			return nil
		}
		if len(path) == maxDepth {
			return fmt.Errorf("%w: %s -> %s (more than %d)", ErrTooDeep, strings.Join(path, " -> "), key, maxDepth)
		}
		path = append(path, key)
		for _, tg := range targets {
			next := tg.addr
			if strings.HasPrefix(next, "@") {
				local, _, _ := address.Cut(a)
				next = local + next
			}
			if tg.noExpand || strings.EqualFold(next, a) {
				add(next)
				continue
			}
			if err := walk(next, path); err != nil {
				return err
			}
		}
		done[key] = true
		return nil
	}
	if err := walk(addr, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// maybeReload re-reads the files when reload_interval has passed since the
// last check and one of them changed. A file that no longer parses keeps
// the aliases of the last good read (and is tried again at the next check).
func (p *Aliases) maybeReload(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.reload <= 0 || p.now().Sub(p.lastCheck) < p.cfg.reload {
		return
	}
	p.lastCheck = p.now()
	if !changed(p.table.Load().files) {
		return
	}
	t, err := load(p.cfg.aliasesFile, p.cfg.virtualFile, p.cfg.domain)
	if err != nil {
		p.log(ctx, "error", "aliases: reload failed, keeping the aliases read before", map[string]string{"err": err.Error()})
		return
	}
	p.table.Store(t)
	p.log(ctx, "info", "aliases: files reloaded", map[string]string{
		"aliases": fmt.Sprint(len(t.aliases)), "virtual": fmt.Sprint(len(t.virtual) + len(t.catchAll)),
	})
	p.logWarnings(ctx, t)
}

func (p *Aliases) logWarnings(ctx context.Context, t *table) {
	for _, w := range t.warnings {
		p.log(ctx, "warn", "aliases: "+w, nil)
	}
}

// log writes through the host; p.mu is held.
func (p *Aliases) log(ctx context.Context, level, msg string, fields map[string]string) {
	if p.host != nil {
		p.host.Log(ctx, level, msg, fields)
	}
}

var (
	_ sdk.Describer   = (*Aliases)(nil)
	_ sdk.Configurer  = (*Aliases)(nil)
	_ sdk.RcptHook    = (*Aliases)(nil)
	_ sdk.CommandHook = (*Aliases)(nil)
	_ sdk.DataHook    = (*Aliases)(nil)
)
