package delivery

// This file is the per-domain hold (Postfix's defer_transports with
// postqueue -s and ETRN): the recipient domains whose mail waits in the
// queue without an attempt, named by the configuration (hold_domains) or
// by the operator (HoldDomain, kept in the spool's key-value store so that
// a restart keeps it), and the flushes (ETRN, `queue retry -domain`) that
// deliver a held domain's queued mail once.
//
// How held mail is scheduled: a delivery round leaves out the jobs of held
// domains (no connection, no attempt counted, no deferred notification).
// A message with nothing but held recipients left is looked at again
// after the retry schedule's longest wait, or at its expiry if that comes
// first: then its held recipients fail as every expired recipient does
// (5.4.7, with the failure DSN they asked for), unless hold_expires =
// false (Config.HoldNoExpiry) keeps them while held. Releasing a hold (or
// dropping a domain from hold_domains by a reload) makes the domain's
// mail due at once.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// holdKey is where the operator's holds live in the spool's key-value
// store. It has no '/', so it is no script's or plugin's key (those are
// always "<name>/…").
const holdKey = "delivery.held_domains"

// flushWindow is how long a flush of a held domain lets the messages it
// covers start; one that waited longer for capacity waits for the next.
const flushWindow = time.Hour

// Sources of a DomainHold.
const (
	HoldByConfig   = "hold_domains" // delivery { hold_domains }
	HoldByOperator = "operator"     // `gateway queue hold -domain`, the admin API
)

// Errors of the domain holds (wrapped): ReleaseDomain of a domain the
// operator did not hold, and a domain that is not a name or "*.name".
var (
	ErrNotHeld   = errors.New("delivery: domain is not held")
	ErrBadDomain = errors.New("delivery: bad domain")
)

// DomainHold is one held domain pattern.
type DomainHold struct {
	Domain string    `json:"domain"`         // "bk.test", or "*.bk.test" for its subdomains
	Source string    `json:"source"`         // HoldByConfig or HoldByOperator
	Since  time.Time `json:"since,omitzero"` // when the operator held it; zero for the configuration's
}

// Reason is the hold as the queue listing and the log say it:
// "hold_domains bk.test" or "operator hold bk.test".
func (h DomainHold) Reason() string {
	if h.Source == HoldByOperator {
		return "operator hold " + h.Domain
	}
	return "hold_domains " + h.Domain
}

// holds is the engine's set of held domains. Changes of the operator's
// holds are written to the spool before they take effect.
type holds struct {
	spool *queue.Spool
	write sync.Mutex // serialises changes of the operator's holds

	mu       sync.Mutex
	config   []string             // patterns from hold_domains
	operator []DomainHold         // sorted by Domain
	flushed  map[string]time.Time // domain → when ETRN flushed it
}

// loadHolds reads the operator's holds from the spool.
func loadHolds(spool *queue.Spool, config []string, now time.Time) (*holds, error) {
	h := &holds{spool: spool, config: slices.Clone(config), flushed: map[string]time.Time{}}
	v, ok, err := spool.KVGet(holdKey, now)
	if err != nil {
		return nil, fmt.Errorf("delivery: reading the held domains: %w", err)
	}
	if ok {
		if err := json.Unmarshal([]byte(v), &h.operator); err != nil {
			return nil, fmt.Errorf("delivery: reading the held domains: %w", err)
		}
	}
	return h, nil
}

// matches reports whether pattern covers domain (both lower case).
func matches(pattern, domain string) bool {
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(domain, suffix) && len(domain) > len(suffix)
	}
	return pattern == domain
}

// of returns the hold that covers domain: the operator's before the
// configuration's, an exact name before a pattern.
func (h *holds) of(domain string) (DomainHold, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ofLocked(domain)
}

func (h *holds) ofLocked(domain string) (DomainHold, bool) {
	var found []DomainHold
	for _, o := range h.operator {
		if matches(o.Domain, domain) {
			found = append(found, o)
		}
	}
	for _, p := range h.config {
		if matches(p, domain) {
			found = append(found, DomainHold{Domain: p, Source: HoldByConfig})
		}
	}
	if len(found) == 0 {
		return DomainHold{}, false
	}
	for _, f := range found {
		if f.Domain == domain {
			return f, true
		}
	}
	return found[0], true
}

// holding returns the hold that keeps m's recipients in domain from an
// attempt now: none if domain is not held, or if a flush covers m (it was
// queued here and due when domain was last flushed). A copy imported from
// another node arrived earlier but was queued here at its import, which
// its ID tells (queue.IDTime).
func (h *holds) holding(domain string, m *queue.Message) (DomainHold, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hd, ok := h.ofLocked(domain)
	if !ok {
		return hd, false
	}
	queued := m.Created
	if t := queue.IDTime(m.ID); t.After(queued) {
		queued = t
	}
	if at, ok := h.flushed[domain]; ok && !queued.After(at) && !m.NextAttempt.After(at) {
		return DomainHold{}, false
	}
	return hd, true
}

// flush lets the mail of domain queued and due by now start once, if
// domain is held.
func (h *holds) flush(domain string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for d, at := range h.flushed {
		if now.Sub(at) > flushWindow {
			delete(h.flushed, d)
		}
	}
	if _, ok := h.ofLocked(domain); ok {
		h.flushed[domain] = now
	}
}

// list returns every hold, sorted by domain, the configuration's first.
func (h *holds) list() []DomainHold {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]DomainHold, 0, len(h.config)+len(h.operator))
	for _, p := range h.config {
		out = append(out, DomainHold{Domain: p, Source: HoldByConfig})
	}
	out = append(out, h.operator...)
	slices.SortStableFunc(out, func(a, b DomainHold) int { return strings.Compare(a.Domain, b.Domain) })
	return out
}

// setConfig replaces the configuration's patterns and returns those no
// longer in it.
func (h *holds) setConfig(patterns []string) (dropped []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.config {
		if !slices.Contains(patterns, p) {
			dropped = append(dropped, p)
		}
	}
	h.config = slices.Clone(patterns)
	return dropped
}

// change applies edit to a copy of the operator's holds, stores the copy
// and then makes it the engine's. edit reports whether it changed
// anything; nothing is written otherwise.
func (h *holds) change(ctx context.Context, edit func([]DomainHold) ([]DomainHold, bool)) (bool, error) {
	h.write.Lock()
	defer h.write.Unlock()
	h.mu.Lock()
	next, changed := edit(slices.Clone(h.operator))
	h.mu.Unlock()
	if !changed {
		return false, nil
	}
	slices.SortFunc(next, func(a, b DomainHold) int { return strings.Compare(a.Domain, b.Domain) })
	var err error
	if len(next) == 0 {
		err = h.spool.KVDelete(ctx, holdKey)
	} else {
		var b []byte
		if b, err = json.Marshal(next); err == nil {
			err = h.spool.KVSet(ctx, holdKey, string(b), 0)
		}
	}
	if err != nil {
		return false, fmt.Errorf("delivery: storing the held domains: %w", err)
	}
	h.mu.Lock()
	h.operator = next
	h.mu.Unlock()
	return true, nil
}

// add holds pattern for the operator (a pattern held already keeps its
// Since).
func (h *holds) add(ctx context.Context, pattern string, now time.Time) (bool, error) {
	return h.change(ctx, func(list []DomainHold) ([]DomainHold, bool) {
		if slices.ContainsFunc(list, func(o DomainHold) bool { return o.Domain == pattern }) {
			return list, false
		}
		return append(list, DomainHold{Domain: pattern, Source: HoldByOperator, Since: now.UTC()}), true
	})
}

// lift removes the operator's hold of exactly pattern; false if there is
// none.
func (h *holds) lift(ctx context.Context, pattern string) (bool, error) {
	return h.change(ctx, func(list []DomainHold) ([]DomainHold, bool) {
		i := slices.IndexFunc(list, func(o DomainHold) bool { return o.Domain == pattern })
		if i < 0 {
			return list, false
		}
		return slices.Delete(list, i, i+1), true
	})
}

// holdDomainPattern checks an operator's domain or "*.domain".
func holdDomainPattern(s string) (string, error) {
	p, err := config.DomainPattern(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadDomain, err)
	}
	return p, nil
}

// HeldDomains returns every held domain pattern, sorted by domain.
func (e *Engine) HeldDomains() []DomainHold { return e.holds.list() }

// HoldOf returns the hold that keeps mail for domain waiting, if any.
func (e *Engine) HoldOf(domain string) (DomainHold, bool) {
	return e.holds.of(strings.ToLower(strings.TrimSuffix(domain, ".")))
}

// HoldDomain holds the mail of domain (a name, or "*.name" for its
// subdomains) until ReleaseDomain, ETRN or `queue retry -domain`; the hold
// is stored in the spool and survives a restart. Attempts in flight end
// as they would have.
func (e *Engine) HoldDomain(ctx context.Context, domain string) error {
	p, err := holdDomainPattern(domain)
	if err != nil {
		return err
	}
	added, err := e.holds.add(ctx, p, e.now())
	if err != nil {
		return err
	}
	if added {
		e.log.Info("delivery: domain held", "domain", p)
	}
	return nil
}

// ReleaseDomain lifts the operator's hold of domain (exactly the pattern
// HoldDomain was given) and makes its mail due now; it returns how many
// messages it made due. A domain the operator did not hold gives
// ErrNotHeld; one hold_domains still holds stays held.
func (e *Engine) ReleaseDomain(ctx context.Context, domain string) (int, error) {
	p, err := holdDomainPattern(domain)
	if err != nil {
		return 0, err
	}
	lifted, err := e.holds.lift(ctx, p)
	if err != nil {
		return 0, err
	}
	if !lifted {
		if hd, ok := e.holds.of(strings.TrimPrefix(p, "*.")); ok && hd.Source == HoldByConfig {
			return 0, fmt.Errorf("%w by the operator: %s is held (%s); edit the configuration and reload, or deliver its mail once with `gateway queue retry -domain`", ErrNotHeld, p, hd.Reason())
		}
		return 0, fmt.Errorf("%w: %s", ErrNotHeld, p)
	}
	e.log.Info("delivery: domain released", "domain", p)
	return e.releaseMail(ctx, []string{p})
}

// SetHoldDomains replaces the configuration's held domains (a reload of
// hold_domains); the mail of patterns no longer held is made due now.
func (e *Engine) SetHoldDomains(ctx context.Context, patterns []string) {
	dropped := e.holds.setConfig(patterns)
	if len(dropped) == 0 {
		return
	}
	e.log.Info("delivery: hold_domains no longer holds", "domains", strings.Join(dropped, " "))
	if _, err := e.releaseMail(ctx, dropped); err != nil {
		e.log.Error("delivery: making released mail due", "err", err)
	}
}

// releaseMail makes due now the messages with an undelivered recipient in
// a domain one of patterns covers and nothing holds any more.
func (e *Engine) releaseMail(ctx context.Context, patterns []string) (int, error) {
	return e.retryWhere(ctx, e.now(), func(m *queue.Message) bool {
		for i, rc := range m.Envelope.Recipients {
			d := rc.Address.DomainFold()
			if i >= len(m.Recipients) || !undelivered(m.Recipients[i].Status) ||
				!slices.ContainsFunc(patterns, func(p string) bool { return matches(p, d) }) {
				continue
			}
			if _, held := e.holds.of(d); !held {
				return true
			}
		}
		return false
	})
}

// withoutHeld drops from groups the jobs of the domains held for m now,
// and reports whether it dropped any. A held job of a message past its
// lifetime stays, marked held: it ends at once without an attempt, and
// its recipients expire.
func (e *Engine) withoutHeld(m *queue.Message, groups []*destGroup, now time.Time) ([]*destGroup, bool) {
	expired := !e.cfg.HoldNoExpiry && !now.Before(m.Created.Add(e.cfg.MaxLifetime))
	kept := groups[:0]
	dropped := false
	for _, g := range groups {
		hd, held := e.holds.holding(g.domain, m)
		switch {
		case !held:
		case expired:
			g.held = "delivery to " + g.domain + " is held (" + hd.Reason() + ")"
		default:
			dropped = true
			continue
		}
		kept = append(kept, g)
	}
	return kept, dropped
}

// maxParking bounds the held messages set aside at once (park): their
// writes share the spool's fsyncs, and past it the scheduler waits.
const maxParking = 256

// park sets leased message m aside (waitHeld) and then gives back its
// lease, in a goroutine of its own while fewer than maxParking are, so
// that a queue full of held mail costs the scheduler a group commit per
// batch, not an fsync per message.
func (e *Engine) park(ctx context.Context, m *queue.Message, now time.Time) {
	select {
	case e.parking <- struct{}{}:
	default:
		e.waitHeld(ctx, m, now)
		e.unlease(m.ID)
		return
	}
	e.jobs.Add(1)
	go func() {
		defer e.jobs.Done()
		defer func() { <-e.parking }()
		defer e.unlease(m.ID)
		defer func() {
			if p := recover(); p != nil {
				e.log.Error("delivery: panic while setting held mail aside", "id", m.ID, "panic", p)
			}
		}()
		e.waitHeld(ctx, m, now)
	}()
}

// waitHeld sets the next attempt of message m, whose recipients left are
// all held, to the retry schedule's longest wait from now, or to its
// expiry if that comes first.
func (e *Engine) waitHeld(ctx context.Context, m *queue.Message, now time.Time) {
	next := now.Add(RetryDelay(e.cfg.Retry, len(e.cfg.Retry)))
	if exp := m.Created.Add(e.cfg.MaxLifetime); !e.cfg.HoldNoExpiry && exp.Before(next) {
		next = exp
	}
	err := e.spool.Update(context.WithoutCancel(ctx), m.ID, func(sm *queue.Message) error {
		sm.NextAttempt = next
		return nil
	})
	if err != nil && !errors.Is(err, queue.ErrNotFound) {
		e.log.Error("delivery: rescheduling held mail", "id", m.ID, "err", err)
		return
	}
	e.mu.Lock()
	e.noteNextLocked(next)
	e.mu.Unlock()
	e.wakeScheduler()
	e.log.Debug("delivery: held", "id", m.ID, "next", next)
}

// heldOutcome ends the job of a held domain whose message has expired.
func heldOutcome(reason string) rcptOutcome {
	return rcptOutcome{class: Temporary, reply: "451 4.3.2 " + reason, status: sdk.EnhancedCode{4, 3, 2}}
}
