package delivery

// This file holds the operator's queue operations (the admin API and
// `gateway queue …`). Each leases the message like a delivery does, so
// that no operation and no delivery work on one message at once.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// Retry makes a message due now. RetryDomain makes every message with an
// undelivered recipient in domain due now (ETRN, `queue retry --domain`);
// RetryAll makes everything due now. They return how many messages changed.
//
// A message being delivered right now is left alone: Retry returns nil at
// once, and its round makes it due again when it ends (the attempt may
// defer it); RetryDomain and RetryAll skip it. A held message keeps being held; Retry still sets its
// next attempt, RetryDomain and RetryAll skip it. Retry and RetryAll leave
// held domains held (hold.go).
//
// Each also makes the transports forget the next hops whose connect failed
// lately (DeadHostCache) for the domains concerned, so that "the link is
// up, ETRN now" dials at once instead of waiting out the dead-host TTL.
func (e *Engine) Retry(ctx context.Context, id string) error {
	for !e.acquireSoon(ctx, id) {
		if asked, free := e.retryAfterRound(id); asked || !free {
			return nil // the round in flight retries it when it ends; or another operation holds it
		}
	}
	now := e.now()
	var domains []string
	err := e.spool.Update(ctx, id, func(m *queue.Message) error {
		m.NextAttempt = now
		domains = pendingDomains(m)
		return nil
	})
	// Before the Kick: a scan it starts skips a message still leased,
	// and nothing would start it until the scheduler's next timer.
	e.unlease(id)
	if err != nil {
		return wrapID("retry", id, err)
	}
	for _, d := range domains {
		e.forgetDead(d)
	}
	e.Kick()
	return nil
}

// retryAfterRound asks the round in flight on id, if there is one, to
// retry the message when it ends (jobEnded): an operator's retry that
// came during an attempt would otherwise be lost to the attempt's
// deferral. free reports that id is not leased at all.
func (e *Engine) retryAfterRound(id string) (asked, free bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, leased := e.leases[id]
	if r != nil {
		r.retryAsked = true
	}
	return r != nil, !leased
}

// RetryDomain also lifts the operator's hold of exactly domain, and
// delivers the mail of a domain still held (by hold_domains or a "*."
// hold) once: what is queued now is tried now, what comes later waits
// (Postfix's postqueue -s and ETRN with defer_transports).
func (e *Engine) RetryDomain(ctx context.Context, domain string) (int, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	e.forgetDead(domain)
	if lifted, err := e.holds.lift(ctx, domain); err != nil {
		return 0, err
	} else if lifted {
		e.log.Info("delivery: domain released by a flush", "domain", domain)
	}
	now := e.now()
	e.holds.flush(domain, now)
	return e.retryWhere(ctx, now, func(m *queue.Message) bool {
		for i, rc := range m.Envelope.Recipients {
			if i < len(m.Recipients) && undelivered(m.Recipients[i].Status) && rc.Address.DomainFold() == domain {
				return true
			}
		}
		return false
	})
}

func (e *Engine) RetryAll(ctx context.Context) (int, error) {
	e.forgetDead("")
	return e.retryWhere(ctx, e.now(), func(*queue.Message) bool { return true })
}

// forgetDead clears the dead-host caches of the transports for domain
// ("" = all).
func (e *Engine) forgetDead(domain string) {
	for _, t := range e.opt.Transports {
		if c, ok := t.(DeadHostCache); ok {
			c.ForgetDead(domain)
		}
	}
}

// pendingDomains lists the domains of m's undelivered recipients, each once.
func pendingDomains(m *queue.Message) []string {
	var out []string
	for i, rc := range m.Envelope.Recipients {
		d := rc.Address.DomainFold()
		if i < len(m.Recipients) && undelivered(m.Recipients[i].Status) && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// retryWhere makes the messages that match, are not held, not in flight
// and not yet due at now, due at now. It reschedules them in batches of
// retryBatch, one spool transaction each, and kicks the scheduler after
// each, so that the first are delivered while the rest are rescheduled.
// A record that does not decode, or is of a newer version, is passed
// over (Spool.Reschedule), and not counted.
func (e *Engine) retryWhere(ctx context.Context, now time.Time, match func(*queue.Message) bool) (int, error) {
	return e.retryUpTo(ctx, now, 0, match)
}

// retryUpTo is retryWhere for at most limit messages (0 = all).
func (e *Engine) retryUpTo(ctx context.Context, now time.Time, limit int, match func(*queue.Message) bool) (int, error) {
	n := 0
	var ids []string
	reschedule := func() error {
		changed, err := e.spool.Reschedule(ctx, ids, now)
		for _, id := range ids {
			e.unlease(id)
		}
		ids = ids[:0]
		n += changed
		if changed > 0 {
			e.Kick()
		}
		return err
	}
	var opErr error
	err := e.spool.List(func(m *queue.Message) bool {
		if opErr = ctx.Err(); opErr != nil {
			return false
		}
		if m.Held || !m.NextAttempt.After(now) || !match(m) || !e.acquire(m.ID) {
			return true
		}
		ids = append(ids, m.ID)
		if full := limit > 0 && n+len(ids) >= limit; full || len(ids) == retryBatch {
			opErr = reschedule()
			return opErr == nil && !full
		}
		return opErr == nil
	})
	if len(ids) > 0 {
		if rerr := reschedule(); opErr == nil {
			opErr = rerr
		}
	}
	if err != nil {
		return n, err
	}
	if opErr != nil {
		return n, fmt.Errorf("delivery: retry: %w", opErr)
	}
	return n, nil
}

// retryBatch is how many messages retryWhere reschedules in one spool
// transaction.
const retryBatch = 256

// Hold stops deliveries of a message until Release.
func (e *Engine) Hold(ctx context.Context, id string) error {
	if !e.acquireSoon(ctx, id) {
		return wrapID("hold", id, ErrBusy)
	}
	defer e.unlease(id)
	if err := e.spool.Update(ctx, id, func(m *queue.Message) error {
		m.Held = true
		return nil
	}); err != nil {
		return wrapID("hold", id, err)
	}
	e.log.Info("delivery: message held", "id", id)
	return nil
}

// Release lets a held message be delivered again, at its next attempt time
// (at once if that has passed).
func (e *Engine) Release(ctx context.Context, id string) error {
	if err := e.spool.Update(ctx, id, func(m *queue.Message) error {
		m.Held = false
		return nil
	}); err != nil {
		return wrapID("release", id, err)
	}
	e.log.Info("delivery: message released", "id", id)
	e.Kick()
	return nil
}

// Bounce fails every undelivered recipient now (5.0.0, "bounced by the
// administrator"), sends the DSN the recipients asked for and removes the
// message.
func (e *Engine) Bounce(ctx context.Context, id string) error {
	if !e.acquireSoon(ctx, id) {
		return wrapID("bounce", id, ErrBusy)
	}
	defer e.unlease(id)
	m, err := e.spool.Get(id)
	if err != nil {
		return wrapID("bounce", id, err)
	}
	now := e.now()
	var reports []dsn.RecipientReport
	var notes []notification
	for i, rc := range m.Envelope.Recipients {
		if i >= len(m.Recipients) || !undelivered(m.Recipients[i].Status) {
			continue
		}
		notes = append(notes, notification{sdk.StageBounced, rc})
		if m.Envelope.Sender.IsNull() || dsn.Wants(rc.Notify, dsn.ActionFailed) {
			o := rcptOutcome{reply: m.Recipients[i].LastReply}
			rep := o.report(rc, dsn.ActionFailed, m.Recipients[i].Updated)
			rep.Status = sdk.EnhancedCode{5, 0, 0}
			rep.Diagnostic = "bounced by the administrator"
			reports = append(reports, rep)
		}
	}
	if len(reports) > 0 {
		if err := e.queueDSN(ctx, m, reports, now); err != nil {
			return wrapID("bounce", id, err)
		}
	}
	if err := e.spool.Delete(ctx, id); err != nil {
		return wrapID("bounce", id, err)
	}
	e.failed.Add(int64(len(notes)))
	e.log.Info("delivery: message bounced by the administrator", "id", id, "rcpts", len(notes))
	e.notify(ctx, &engineRound{env: m.Envelope}, notes)
	return nil
}

// Remove deletes a message without any DSN.
func (e *Engine) Remove(ctx context.Context, id string) error {
	if !e.acquireSoon(ctx, id) {
		return wrapID("remove", id, ErrBusy)
	}
	defer e.unlease(id)
	if err := e.spool.Delete(ctx, id); err != nil {
		return wrapID("remove", id, err)
	}
	e.log.Info("delivery: message removed", "id", id)
	return nil
}
