package delivery

// This file records a job's outcomes in the spool: recipient states, the
// recipients a predelivery hook added, DSNs, the next attempt, and the
// counters, metrics and log line.

import (
	"context"
	"slices"
	"time"

	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// record applies the outcomes of attempt a: it adds the recipients its
// predelivery hook added, queues the DSN the failures call for, then
// stores the recipients' new states with one Spool.Replace or, when this
// was the round's last job and every recipient is now final, deletes the
// message. The last job of a round not cut short by shutdown also sends
// the delay warning and sets the message's next attempt; the last job of
// every round sends its success DSN (see sendSuccesses). It runs with
// r.mu held and returns the notifications to dispatch and the message's
// next attempt if it set one.
//
// Recipients a predelivery hook added are stored by the same write that
// finishes those it replaced: until it is on disk the replaced ones are
// still due, so a crash loses nothing (the hook expands them again).
func (e *Engine) record(ctx context.Context, a *jobAttempt, last bool, took time.Duration) ([]notification, time.Time) {
	r := a.r
	bg := context.WithoutCancel(ctx) // what was done must be recorded, shutdown or not
	now := e.now()
	interrupted := ctx.Err() != nil
	m := cloneMessage(r.msg)
	addRecipients(m, a)
	if m.Hops == 0 && a.hops > 0 {
		m.Hops = a.hops // a retry need not count again (hopCount)
	}

	e.noteReach(ctx, a, now)
	reports := e.applyOutcomes(m, r, a.outs, now)
	if last && !interrupted {
		reports = append(reports, e.delayWarnings(m, r, now)...)
	}
	if len(reports) > 0 {
		if err := e.queueDSN(bg, m, reports, now); err != nil {
			// Without its DSN a failure must not be final: retry it, and
			// bounce it again then.
			e.log.Error("delivery: cannot queue a DSN; the failed recipients stay deferred", "id", m.ID, "err", err)
			m.DelayWarned = r.msg.DelayWarned // a warning not queued is sent by a later round
			for i := range a.outs {
				if o := &a.outs[i]; !o.shutdown && o.class == Permanent {
					o.class = Temporary
					m.Recipients[o.idx].Status = queue.Deferred
				}
			}
		}
	}
	if last {
		e.sendSuccesses(bg, m, r, now)
	}

	final := allFinal(m)
	var err error
	var next time.Time
	if final && last {
		err = e.spool.Delete(bg, m.ID)
	} else {
		if last && !interrupted {
			next, r.parked, r.parkGen = e.parkedNext(m, e.nextAttempt(m, now), now)
		}
		// The round holds the message's lease, and its jobs record one at
		// a time (r.mu): r.msg is what is stored, and m replaces it whole,
		// with nothing decoded on the spool's commit loop.
		err = e.spool.Replace(bg, r.msg, m)
	}
	if err != nil {
		e.log.Error("delivery: recording an attempt", "id", m.ID, "domain", a.domain, "err", err)
	}
	attempt := r.msg.Attempts + 1 // this round's number, 1 for the first (m's may be counted up already)
	r.msg = m
	return e.account(m, a, took, attempt, final && last), next
}

// addRecipients appends to m, as pending, the recipients a's predelivery
// hook added, and points their outcomes at them. One that m already has
// (another job of the round added it) is not added twice.
func addRecipients(m *queue.Message, a *jobAttempt) {
	at := make([]int, len(a.added))
	for k, rc := range a.added {
		i := slices.IndexFunc(m.Envelope.Recipients, func(x envelope.Recipient) bool { return x.Address.Mailbox() == rc.Address.Mailbox() })
		if i < 0 {
			i = len(m.Envelope.Recipients)
			m.Envelope.Recipients = append(m.Envelope.Recipients, rc)
			m.Recipients = append(m.Recipients, queue.RecipientState{Status: queue.Pending})
		}
		at[k] = i
	}
	for i := range a.outs {
		if o := &a.outs[i]; o.added > 0 {
			o.idx = at[o.added-1]
		}
	}
}

// applyOutcomes sets the states of m's recipients from outs (a temporary
// failure past MaxLifetime becomes a permanent one) and returns the
// failure reports they call for; the success reports they call for wait
// in r.successes for the round's end.
func (e *Engine) applyOutcomes(m *queue.Message, r *engineRound, outs []rcptOutcome, now time.Time) []dsn.RecipientReport {
	nullSender := m.Envelope.Sender.IsNull()
	var reports []dsn.RecipientReport
	for i := range outs {
		o := &outs[i]
		rs := &m.Recipients[o.idx]
		rc := m.Envelope.Recipients[o.idx]
		if o.shutdown {
			// Not an attempt: no count, no new Updated (the delay-warning
			// rule reads it), no bounce.
			rs.Status, rs.LastReply = queue.Deferred, "shutdown"
			continue
		}
		if o.class == Temporary && now.Sub(m.Created) >= e.cfg.MaxLifetime {
			o.class, o.expired, o.status = Permanent, true, sdk.EnhancedCode{5, 4, 7}
		}
		rs.LastReply, rs.TLSPolicy, rs.Updated = o.reply, o.tlsPolicy, now
		rs.Attempts++
		r.last[o.idx] = *o
		switch o.class {
		case Delivered:
			rs.Status = queue.Delivered
			action := o.successAction()
			if action != "" && !o.dropped && !nullSender && dsn.Wants(rc.Notify, action) {
				rep := o.report(rc, action, now)
				if o.remoteMTA == "" {
					// No server answered: the text of a local delivery
					// (a Maildir's file name) is for the logs, not the
					// sender. Postfix's local delivery writes none either.
					rep.Diagnostic = ""
				}
				r.successes = append(r.successes, rep)
			}
		case Permanent:
			rs.Status = queue.Failed
			if !o.dropped && (nullSender || dsn.Wants(rc.Notify, dsn.ActionFailed)) {
				reports = append(reports, o.report(rc, dsn.ActionFailed, now))
			}
		default:
			rs.Status = queue.Deferred
		}
	}
	return reports
}

// sendSuccesses queues the success DSN of round r of m, its last job
// being recorded (or, when shutdown kept that job from starting, at the
// end of Run: sendCutShortSuccesses): one report for every recipient the
// round delivered that asked for one (NOTIFY=SUCCESS) and whose next hop
// did not take the request on, whatever job of the round delivered it.
//
// It is queued before the last job's record, as a bounce is: a crash in
// between delivers that job's recipients again, and the next round
// reports them again, each report standing for a delivery that happened.
// The recipients of the round's earlier jobs are on disk as delivered
// already and no later round knows them: a crash before the round's end
// loses their report rather than sending it twice. A report that cannot
// be queued is lost the same way, with a log line. Either way the mail
// itself was delivered; only the notice of it is missing.
func (e *Engine) sendSuccesses(ctx context.Context, m *queue.Message, r *engineRound, now time.Time) {
	reports := r.successes
	r.successes = nil
	if len(reports) == 0 {
		return
	}
	if err := e.queueDSN(ctx, m, reports, now); err != nil {
		e.log.Error("delivery: cannot queue a success DSN; it is lost (the mail was delivered)", "id", m.ID,
			"rcpts", len(reports), "err", err)
	}
}

// sendCutShortSuccesses sends the success DSNs of the rounds that
// shutdown cut short, whose last jobs never started: their recipients
// delivered so far are recorded, and the next round would not report
// them. It runs once no job is left.
func (e *Engine) sendCutShortSuccesses(ctx context.Context) {
	e.mu.Lock()
	var rounds []*engineRound
	for _, r := range e.leases {
		if r != nil {
			rounds = append(rounds, r)
		}
	}
	e.mu.Unlock()
	for _, r := range rounds {
		r.mu.Lock()
		e.sendSuccesses(ctx, r.msg, r, e.now())
		r.mu.Unlock()
	}
}

// delayWarnings returns the delay warning of m, once per message (recorded
// in DelayWarned): at the end of the first round that ends at or after
// Created+DelayWarning with recipients still deferred. The DSN is queued
// before the record, so a crash in between can send it twice, never not
// at all.
func (e *Engine) delayWarnings(m *queue.Message, r *engineRound, now time.Time) []dsn.RecipientReport {
	if m.Envelope.Sender.IsNull() || e.cfg.DelayWarning <= 0 || m.DelayWarned || allFinal(m) ||
		now.Before(m.Created.Add(e.cfg.DelayWarning)) {
		return nil
	}
	m.DelayWarned = true
	var reports []dsn.RecipientReport
	for idx, rs := range m.Recipients {
		rc := m.Envelope.Recipients[idx]
		if rs.Status != queue.Deferred || !dsn.Wants(rc.Notify, dsn.ActionDelayed) {
			continue
		}
		o, ok := r.last[idx]
		if !ok {
			o = rcptOutcome{reply: rs.LastReply}
		}
		if o.shutdown {
			continue
		}
		rep := o.report(rc, dsn.ActionDelayed, rs.Updated)
		rep.WillRetryUntil = m.Created.Add(e.cfg.MaxLifetime)
		reports = append(reports, rep)
	}
	return reports
}

// nextAttempt sets m's next attempt after a round and returns it: at once
// when a predelivery hook added recipients that have had no attempt yet,
// else after the retry schedule's wait, with jitter.
func (e *Engine) nextAttempt(m *queue.Message, now time.Time) time.Time {
	fresh := false
	for i, rs := range m.Recipients {
		if rs.Status != queue.Pending || rs.Attempts != 0 {
			continue
		}
		// Not tried, and not because its domain is held: added by a hook.
		if _, held := e.holds.holding(m.Envelope.Recipients[i].Address.DomainFold(), m); !held {
			fresh = true
			break
		}
	}
	m.NextAttempt = now
	if !fresh {
		m.NextAttempt = now.Add(e.jitter(RetryDelay(e.cfg.Retry, m.Attempts)))
	}
	m.Attempts++
	return m.NextAttempt
}

// account counts a's outcomes (stats, metrics), logs the job and returns
// the notifications to dispatch.
func (e *Engine) account(m *queue.Message, a *jobAttempt, took time.Duration, attempt int, done bool) []notification {
	var notes []notification
	var nDelivered, nDeferred, nFailed int
	reply, tlsPolicy := "", ""
	for _, o := range a.outs {
		if o.shutdown {
			continue
		}
		if e.opt.Observer != nil {
			e.opt.Observer.Attempted(a.domain, o.class, o.tlsPolicy, took)
		}
		rc := m.Envelope.Recipients[o.idx]
		switch o.class {
		case Delivered:
			nDelivered++
			if !o.dropped && !o.expanded {
				notes = append(notes, notification{sdk.StageDelivered, rc})
			}
		case Permanent:
			nFailed++
			notes = append(notes, notification{sdk.StageBounced, rc})
		default:
			nDeferred++
			notes = append(notes, notification{sdk.StageDeferred, rc})
		}
		if reply == "" || o.class != Delivered {
			reply = o.reply
		}
		if o.tlsPolicy != "" {
			tlsPolicy = o.tlsPolicy
		}
	}
	e.delivered.Add(int64(nDelivered))
	e.deferred.Add(int64(nDeferred))
	e.failed.Add(int64(nFailed))
	class := "shutdown"
	switch {
	case nDelivered > 0 && nDeferred == 0 && nFailed == 0:
		class = Delivered.String()
	case nDeferred > 0 && nDelivered == 0 && nFailed == 0:
		class = Temporary.String()
	case nFailed > 0 && nDelivered == 0 && nDeferred == 0:
		class = Permanent.String()
	case nDelivered+nDeferred+nFailed > 0:
		class = "mixed"
	}
	e.log.Info("delivery", "id", m.ID, "domain", a.domain, "transport", a.route.Transport, "rcpts", len(a.outs),
		"class", class, "delivered", nDelivered, "deferred", nDeferred, "failed", nFailed,
		"reply", reply, "tls_policy", tlsPolicy, "took", took, "attempt", attempt, "done", done)
	return notes
}
