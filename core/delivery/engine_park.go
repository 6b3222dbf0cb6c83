package delivery

// This file parks the mail of a destination that cannot be reached:
// Postfix's dead destination, taken one step further. When a job's every
// recipient fails with 4.4.1 (no answer from host: the connection failed,
// or every next hop is in the SMTP transport's dead-address cache), its
// domain is down. Of the domain's messages that then wait, one, the
// probe, keeps the retry schedule; the others are parked: their next
// attempt is an hour away (parkMax; sooner for their delay warning or
// expiry). The first job of the domain that reaches a server (the
// probe's, or a new message's) makes its parked mail due at once. So an
// outage costs one write per parked message an hour and one attempt per
// destination per retry, not one attempt per message per retry.
//
// Only the engine's memory knows which domains are down: after a restart
// parked mail waits out its hour (Postfix's longest backoff, 4,000 s by
// default, is as long) unless the operator retries it (`gateway queue
// retry -domain`, ETRN).

import (
	"context"
	"slices"
	"time"

	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// parkMax is the longest a parked message waits without an attempt.
const parkMax = time.Hour

// probeSlack is how late a probe may be before another message of its
// domain takes its place (the probe was removed, or its attempt hangs).
const probeSlack = time.Minute

// downDest is a destination whose last job reached no server.
type downDest struct {
	since    time.Time
	probe    string    // the message that keeps the retry schedule; "" = none yet
	probeDue time.Time // the probe's next attempt
}

// noAnswer is the status of a job that reached no server.
var noAnswer = sdk.EnhancedCode{4, 4, 1}

// noteReach updates whether a's domain is down from a's outcomes, before
// they are applied (an expired recipient's failure is still the
// temporary one the transport gave). A domain reached again has its
// parked mail made due, by a goroutine of the engine's.
func (e *Engine) noteReach(ctx context.Context, a *jobAttempt, now time.Time) {
	tried, down := false, true
	for _, o := range a.outs {
		if o.shutdown {
			continue
		}
		tried = true
		if o.class != Temporary || o.status != noAnswer {
			down = false
		}
	}
	if !tried {
		return
	}
	domain := a.domain
	e.mu.Lock()
	defer e.mu.Unlock()
	d := e.down[domain]
	switch {
	case down && d == nil:
		e.down[domain] = &downDest{since: now}
		e.log.Info("delivery: destination down; its mail waits for one message's retries", "domain", domain)
	case !down && d != nil:
		delete(e.down, domain)
		e.log.Info("delivery: destination reached again; its parked mail is due", "domain", domain, "down_for", now.Sub(d.since))
		e.jobs.Add(1)
		go func() {
			defer e.jobs.Done()
			_, err := e.retryWhere(ctx, now, func(m *queue.Message) bool {
				return slices.Contains(pendingDomains(m), domain)
			})
			if err != nil && ctx.Err() == nil {
				e.log.Error("delivery: making parked mail due", "domain", domain, "err", err)
			}
		}()
	}
}

// parkedNext returns m's next attempt given next, the retry schedule's:
// later when every domain m still has recipients in is down and m is not
// the probe of one (it becomes the probe of one that has none), in which
// case m.NextAttempt is set to it. The delay warning and the expiry still
// come on time.
func (e *Engine) parkedNext(m *queue.Message, next, now time.Time) time.Time {
	domains := pendingDomains(m)
	if len(domains) == 0 || !next.After(now) {
		return next
	}
	e.mu.Lock()
	for _, domain := range domains {
		d := e.down[domain]
		if d == nil {
			e.mu.Unlock()
			return next
		}
		if d.probe == "" || d.probe == m.ID || now.After(d.probeDue.Add(probeSlack)) {
			d.probe, d.probeDue = m.ID, next
			e.mu.Unlock()
			return next
		}
	}
	e.mu.Unlock()
	until := now.Add(parkMax)
	if exp := m.Created.Add(e.cfg.MaxLifetime); exp.Before(until) {
		until = exp
	}
	if warn := m.Created.Add(e.cfg.DelayWarning); e.cfg.DelayWarning > 0 && !m.DelayWarned && warn.After(now) && warn.Before(until) {
		until = warn
	}
	if !until.After(next) {
		return next
	}
	m.NextAttempt = until
	return until
}
