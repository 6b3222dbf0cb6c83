package delivery

// This file parks the mail of a destination that cannot be reached:
// Postfix's dead destination, taken one step further. When a job's every
// recipient fails with 4.4.1 and no server answered (the connection
// failed, or every next hop is in the SMTP transport's dead-address
// cache), its domain is down. Of the domain's messages that then wait,
// one, the probe, keeps the retry schedule; the others are parked: their
// next attempt is an hour away (parkMax; sooner for their delay warning or
// expiry), where it is parked again if the domain is still down. The
// first job of the domain that reaches a server (a delivery, or any reply
// of one: the probe's, or a new message's) makes its parked mail due at
// once; a message parked while that happened is made due when its job
// ends. New mail for a domain that is down is parked as it is committed
// (Engine.Commit), without a job: it costs its commit alone. A probe that
// is late by probeSlack (removed, held, bounced, expired, or its attempt
// hangs) is replaced by a parked message made due by the scheduler; a
// down domain with no mail left is forgotten. So an outage costs an
// attempt per domain per retry, and one per parked message an hour, not
// one per message per retry.
//
// "Down" is per recipient domain, as the engine's jobs are: with a
// smarthost route, each domain behind it has its own probe.
//
// Only the engine's memory knows which domains are down: after a restart
// parked mail waits out its hour (Postfix's longest backoff, 4,000 s by
// default, is as long) unless the operator retries it (`gateway queue
// retry -domain`, ETRN). A node that takes the queue over tries it at
// once: the copy's parking is not its own (queue.Spool.Import).

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mailgate/gateway/core/envelope"
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
	reply    string    // the last such job's reply, for the mail parked as it comes
	probe    string    // the message that keeps the retry schedule; "" = none yet
	probeDue time.Time // the probe's next attempt (or when the probe was last sought)
}

// noAnswer is the status of a job that reached no server.
var noAnswer = sdk.EnhancedCode{4, 4, 1}

// noteReach updates whether a's domain is down from a's outcomes, before
// they are applied (an expired recipient's failure is still the
// temporary one the transport gave): down when every recipient failed
// with 4.4.1 and no server answered, up when one was delivered or a
// server answered. A domain up again has its parked mail made due, by a
// goroutine of the engine's.
func (e *Engine) noteReach(ctx context.Context, a *jobAttempt, now time.Time) {
	tried, down, reached := false, true, false
	for _, o := range a.outs {
		if o.shutdown {
			continue
		}
		tried = true
		if o.class == Delivered || o.remoteMTA != "" {
			reached = true
		}
		if o.class != Temporary || o.status != noAnswer || o.remoteMTA != "" {
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
		e.down[domain] = &downDest{since: now, probeDue: now, reply: firstReply(a.outs)}
		e.log.Info("delivery: destination down; its mail waits for one message's retries", "domain", domain)
	case down:
		d.reply = firstReply(a.outs)
	case reached && d != nil:
		delete(e.down, domain)
		e.releases++
		e.log.Info("delivery: destination reached again; its parked mail is due", "domain", domain, "down_for", now.Sub(d.since))
		e.jobs.Add(1)
		go func() {
			defer e.jobs.Done()
			if _, err := e.retryWhere(ctx, now, pendingIn(domain)); err != nil && ctx.Err() == nil {
				e.log.Error("delivery: making parked mail due", "domain", domain, "err", err)
			}
		}()
	}
}

// pendingIn matches the messages with recipients still to deliver at
// domain.
func pendingIn(domain string) func(*queue.Message) bool {
	return func(m *queue.Message) bool { return slices.Contains(pendingDomains(m), domain) }
}

// parkedNext returns m's next attempt given next, the retry schedule's,
// and whether it parked m: it does when every domain m still has
// recipients in is down and m is not the probe of one (it becomes the
// probe of one that has none, or whose probe is late), and then sets
// m.NextAttempt. The delay warning and the expiry still come on time.
// gen is the count of releases when it decided (see unparkReleased).
func (e *Engine) parkedNext(m *queue.Message, next, now time.Time) (at time.Time, parked bool, gen uint64) {
	if !next.After(now) {
		return next, false, 0
	}
	return e.parkAt(m, next, now)
}

// parkAt is parkedNext for any next, now included: a new message's.
func (e *Engine) parkAt(m *queue.Message, next, now time.Time) (at time.Time, parked bool, gen uint64) {
	domains := pendingDomains(m)
	if len(domains) == 0 {
		return next, false, 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, domain := range domains {
		d := e.down[domain]
		if d == nil {
			return next, false, 0
		}
		if d.probe == "" || d.probe == m.ID || now.After(d.probeDue.Add(probeSlack)) {
			d.probe, d.probeDue = m.ID, next
			return next, false, 0
		}
	}
	until := now.Add(parkMax)
	if exp := m.Created.Add(e.cfg.MaxLifetime); exp.Before(until) {
		until = exp
	}
	if warn := m.Created.Add(e.cfg.DelayWarning); e.cfg.DelayWarning > 0 && !m.DelayWarned && warn.After(now) && warn.Before(until) {
		until = warn
	}
	if !until.After(next) {
		return next, false, 0
	}
	m.NextAttempt = until
	return until, true, e.releases
}

// unparkReleased makes message id due now when released: it was parked
// (by its round's last job, or as it was committed) and a domain was found
// up again since (compared as the lease is given back: r.parkGen, or
// Commit's gen, with e.releases), and the release could not touch the
// message while it was leased.
func (e *Engine) unparkReleased(ctx context.Context, id string, released bool) {
	if !released {
		return
	}
	if _, err := e.spool.Reschedule(context.WithoutCancel(ctx), []string{id}, e.now()); err != nil {
		e.log.Error("delivery: making parked mail due", "id", id, "err", err)
	}
	e.Kick()
}

// Commit commits d, a message just received (env, header: as for
// queue.Draft.Commit), and hands it to the engine, as the SMTP intake
// does: Expect before the commit, Enqueue after it. When every domain it
// has recipients in is down and it would not be a probe, it is committed
// parked instead (queue.Draft.Park), until where parkedNext would put it
// after a failed attempt, and no job starts for it.
func (e *Engine) Commit(ctx context.Context, d *queue.Draft, env *envelope.Envelope, header []byte) error {
	id := d.ID()
	e.Expect(id)
	until, replies, parked, gen := e.parkNew(id, env)
	if parked {
		d.Park(until, replies)
	}
	if err := d.Commit(ctx, env, header); err != nil {
		e.Forget(id)
		e.unprobe(id, env)
		return err
	}
	if !parked {
		e.Enqueue(d.Committed())
		return nil
	}
	e.Forget(id) // no round: the lease goes back as for a failed commit
	e.mu.Lock()
	e.noteNextLocked(until)
	released := e.releases != gen
	e.mu.Unlock()
	e.unparkReleased(ctx, id, released)
	return nil
}

// parkNew is parkAt for a message about to be committed: whether it is to
// be parked, until when, and the replies its recipients then show, each
// its own domain's. It runs for every message the SMTP intake takes in:
// one for a domain that is up costs a look-up, nothing is made for it.
func (e *Engine) parkNew(id string, env *envelope.Envelope) (until time.Time, replies []string, parked bool, gen uint64) {
	if replies = e.downReplies(env); replies == nil {
		return time.Time{}, nil, false, 0
	}
	now := e.now()
	m := &queue.Message{ID: id, Envelope: *env, Recipients: make([]queue.RecipientState, len(env.Recipients)), Created: now}
	if until, parked, gen = e.parkAt(m, now, now); !parked {
		return until, nil, false, 0
	}
	return until, replies, true, gen
}

// downReplies returns, when every domain env has recipients in is down,
// the reply each recipient shows if its message is parked; else nil.
func (e *Engine) downReplies(env *envelope.Envelope) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var replies []string
	for i, rc := range env.Recipients {
		domain := rc.Address.DomainFold()
		d := e.down[domain]
		if d == nil {
			return nil
		}
		if replies == nil {
			replies = make([]string, len(env.Recipients))
		}
		replies[i] = fmt.Sprintf("not tried: %s reached no server since %s (%s)", domain, d.since.UTC().Format(time.RFC3339), d.reply)
	}
	return replies
}

// unprobe gives up the probe role parkNew may have given message id,
// whose commit failed: the scheduler then finds another probe (see
// replaceProbes) instead of waiting for one that was never queued.
func (e *Engine) unprobe(id string, env *envelope.Envelope) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rc := range env.Recipients {
		if d := e.down[rc.Address.DomainFold()]; d != nil && d.probe == id {
			d.probe, d.probeDue = "", time.Time{}
		}
	}
}

// firstReply is the reply of the first outcome of a job not cut short by
// a shutdown.
func firstReply(outs []rcptOutcome) string {
	for _, o := range outs {
		if !o.shutdown {
			return o.reply
		}
	}
	return ""
}

// replaceProbes runs on the scheduler: for each down domain whose probe is
// late by probeSlack, one message of the domain that waits is made due
// to take its place; a domain with none left is forgotten.
func (e *Engine) replaceProbes(ctx context.Context, now time.Time) {
	e.mu.Lock()
	var late []string
	for domain, d := range e.down {
		if now.After(d.probeDue.Add(probeSlack)) {
			late = append(late, domain)
			d.probe, d.probeDue = "", now
		}
	}
	e.mu.Unlock()
	for _, domain := range late {
		n, err := e.retryUpTo(ctx, now, 1, pendingIn(domain))
		switch {
		case err != nil:
			if ctx.Err() == nil {
				e.log.Error("delivery: finding a new probe", "domain", domain, "err", err)
			}
		case n == 0:
			e.mu.Lock()
			if d := e.down[domain]; d != nil && d.probe == "" {
				delete(e.down, domain)
			}
			e.mu.Unlock()
		}
	}
}
