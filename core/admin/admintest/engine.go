// Package admintest holds a stand-in delivery engine for tests of the admin
// API and of the commands that use it.
package admintest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/queue"
)

// Engine stands in for *delivery.Engine. It records every call and does to
// the spool what the engine would do, without delivering anything: Retry
// clears NextAttempt, Hold and Release set Held, Bounce and Remove delete
// the message (Bounce queues no DSN). Unknown IDs give errors wrapping
// delivery.ErrNotFound, as the spool reports them.
type Engine struct {
	Spool *queue.Spool
	Busy  map[string]bool // IDs answered with delivery.ErrBusy
	Stat  delivery.Stats  // what Stats returns
	// Holds are the held domains: HoldDomain adds an operator hold,
	// ReleaseDomain removes one (ErrNotHeld if there is none; it makes no
	// message due), HoldOf finds exact names only.
	Holds []delivery.DomainHold
	Now   func() time.Time // the Since of a new hold; nil = time.Now

	mu    sync.Mutex
	calls []string
}

// Calls returns the calls so far, in order, as "op arg": "retry ID",
// "retry-domain example.net", "retry-all", "hold ID", "release ID",
// "bounce ID", "remove ID", "hold-domain D", "release-domain D".
func (e *Engine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

func (e *Engine) record(op, arg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if arg != "" {
		op += " " + arg
	}
	e.calls = append(e.calls, op)
}

func (e *Engine) busy(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.Busy[id]
}

func (e *Engine) update(ctx context.Context, op, id string, fn func(*queue.Message)) error {
	e.record(op, id)
	if e.busy(id) {
		return delivery.ErrBusy
	}
	return e.Spool.Update(ctx, id, func(m *queue.Message) error {
		fn(m)
		return nil
	})
}

func (e *Engine) delete(ctx context.Context, op, id string) error {
	e.record(op, id)
	if e.busy(id) {
		return delivery.ErrBusy
	}
	return e.Spool.Delete(ctx, id)
}

func (e *Engine) Retry(ctx context.Context, id string) error {
	return e.update(ctx, "retry", id, func(m *queue.Message) { m.NextAttempt = time.Time{} })
}

func (e *Engine) Hold(ctx context.Context, id string) error {
	return e.update(ctx, "hold", id, func(m *queue.Message) { m.Held = true })
}

func (e *Engine) Release(ctx context.Context, id string) error {
	return e.update(ctx, "release", id, func(m *queue.Message) { m.Held = false })
}

func (e *Engine) Bounce(ctx context.Context, id string) error { return e.delete(ctx, "bounce", id) }
func (e *Engine) Remove(ctx context.Context, id string) error { return e.delete(ctx, "remove", id) }

// RetryDomain makes due every message that is not held and has a pending
// or deferred recipient in domain.
func (e *Engine) RetryDomain(ctx context.Context, domain string) (int, error) {
	e.record("retry-domain", domain)
	return e.retryWhere(ctx, func(m *queue.Message) bool {
		for i, rc := range m.Envelope.Recipients {
			if rc.Address.DomainFold() == domain && undelivered(m.Recipients[i].Status) {
				return true
			}
		}
		return false
	})
}

// RetryAll makes due every message that is not held.
func (e *Engine) RetryAll(ctx context.Context) (int, error) {
	e.record("retry-all", "")
	return e.retryWhere(ctx, func(*queue.Message) bool { return true })
}

func (e *Engine) retryWhere(ctx context.Context, match func(*queue.Message) bool) (int, error) {
	var ids []string
	err := e.Spool.List(func(m *queue.Message) bool {
		if !m.Held && match(m) {
			ids = append(ids, m.ID)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	for _, id := range ids {
		err := e.Spool.Update(ctx, id, func(m *queue.Message) error {
			m.NextAttempt = time.Time{}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

func (e *Engine) HoldDomain(ctx context.Context, domain string) error {
	e.record("hold-domain", domain)
	if strings.ContainsAny(domain, " _/") || domain == "" {
		return fmt.Errorf("%w: %q", delivery.ErrBadDomain, domain)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !slices.ContainsFunc(e.Holds, func(h delivery.DomainHold) bool { return h.Domain == domain && h.Source == delivery.HoldByOperator }) {
		now := time.Now
		if e.Now != nil {
			now = e.Now
		}
		e.Holds = append(e.Holds, delivery.DomainHold{Domain: domain, Source: delivery.HoldByOperator, Since: now().UTC()})
	}
	return nil
}

func (e *Engine) ReleaseDomain(ctx context.Context, domain string) (int, error) {
	e.record("release-domain", domain)
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.IndexFunc(e.Holds, func(h delivery.DomainHold) bool { return h.Domain == domain && h.Source == delivery.HoldByOperator })
	if i < 0 {
		return 0, fmt.Errorf("%w: %s", delivery.ErrNotHeld, domain)
	}
	e.Holds = slices.Delete(e.Holds, i, i+1)
	return 0, nil
}

func (e *Engine) HeldDomains() []delivery.DomainHold {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.Holds)
}

func (e *Engine) HoldOf(domain string) (delivery.DomainHold, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, h := range e.Holds {
		if h.Domain == domain {
			return h, true
		}
	}
	return delivery.DomainHold{}, false
}

func undelivered(st queue.Status) bool { return st == queue.Pending || st == queue.Deferred }

// Stats returns e.Stat.
func (e *Engine) Stats() delivery.Stats { return e.Stat }

var _ admin.Engine = (*Engine)(nil)
