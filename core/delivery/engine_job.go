package delivery

// This file is one job of a delivery round: the attempt (loop check,
// predelivery in engine_predelivery.go, transport) and what each
// recipient's outcome is. engine_record.go records it.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// rcptOutcome is one recipient's outcome of one attempt.
type rcptOutcome struct {
	idx       int // into Envelope.Recipients (for an added recipient, set when recorded)
	added     int // 1 + its place in jobAttempt.added when the predelivery hook added it; 0 = not added
	class     Class
	reply     string           // becomes RecipientState.LastReply and the DSN's Diagnostic-Code
	status    sdk.EnhancedCode // RFC 3463 status for a DSN; zero = default of the action
	remoteMTA string
	tlsPolicy string  // Result.TLSPolicy
	local     bool    // reply is this gateway's own account (Result.Local)
	handoff   Handoff // Delivered by the transport: what took the message
	dropped   bool    // predelivery Drop, left out of its list, or no domain to deliver to: no DSN, no delivered notification
	expanded  bool    // replaced by others in a predelivery list: recorded delivered, an "expanded" DSN on request, no notification
	shutdown  bool    // cut short by shutdown: not an attempt
	expired   bool    // a temporary failure past MaxLifetime
}

// setAll gives every outcome of outs o's result, keeping whom each is for.
func setAll(outs []rcptOutcome, o rcptOutcome) {
	for i := range outs {
		o.idx, o.added = outs[i].idx, outs[i].added
		outs[i] = o
	}
}

// jobAttempt is one job's attempt in progress: what the predelivery hook
// may change (route, envelope, recipients, content) and, once it has
// ended, every recipient's outcome.
type jobAttempt struct {
	r      *engineRound
	domain string
	route  Route
	// env is this attempt's copy of the envelope: the predelivery sender
	// changes it, and its Recipients are the job's, those the transport
	// gets.
	env *envelope.Envelope
	// outs[i] is the outcome of env.Recipients[i]; after them come the
	// outcomes settled without the transport (recipients the predelivery
	// hook left out).
	outs []rcptOutcome
	// added are the recipients the predelivery hook added to the message,
	// recorded with the attempt; those of this domain are also in env.
	added   []envelope.Recipient
	content jobContent
	hops    int // the Received fields counted for this attempt; 0 = not counted
}

// newAttempt is the attempt of group g of round r, before predelivery.
func (e *Engine) newAttempt(r *engineRound, g *destGroup) *jobAttempt {
	env := cloneEnvelope(&r.env)
	env.Recipients = make([]envelope.Recipient, len(g.idx))
	outs := make([]rcptOutcome, len(g.idx))
	for i, idx := range g.idx {
		env.Recipients[i] = r.env.Recipients[idx]
		outs[i].idx = idx
	}
	return &jobAttempt{
		r:       r,
		domain:  g.domain,
		route:   selectRoute(e.cfg, g.domain),
		env:     env,
		outs:    outs,
		content: jobContent{size: r.size, open: func() (io.ReadCloser, error) { return r.open(e) }},
	}
}

// end ends the attempt before the transport with o for every recipient.
func (a *jobAttempt) end(o rcptOutcome) { setAll(a.outs, o) }

// runJob performs and records one job; it runs in its own goroutine.
func (e *Engine) runJob(ctx context.Context, r *engineRound, g *destGroup) {
	defer e.jobs.Done()
	start := time.Now()
	a := e.attempt(ctx, r, g)
	took := time.Since(start)
	e.freeSlot(g)

	r.mu.Lock()
	e.mu.Lock()
	r.unfinished--
	last := r.unfinished == 0
	e.mu.Unlock()
	var notes []notification
	var next time.Time
	func() {
		defer func() {
			if p := recover(); p != nil {
				e.log.Error("delivery: panic while recording an attempt", "id", r.id, "domain", g.domain,
					"panic", p, "stack", string(debug.Stack()))
				e.rescue(ctx, r.id)
			}
		}()
		notes, next = e.record(ctx, a, last, took)
	}()
	r.mu.Unlock()

	e.notify(ctx, r, notes)
	e.jobEnded(ctx, r, last, next)
}

// rescue reschedules a message whose recording failed half-way, so that it
// is retried later instead of at once.
func (e *Engine) rescue(ctx context.Context, id string) {
	next := e.now().Add(RetryDelay(e.cfg.Retry, 0))
	err := e.spool.Update(context.WithoutCancel(ctx), id, func(m *queue.Message) error {
		m.NextAttempt = next
		return nil
	})
	if err != nil {
		e.log.Error("delivery: rescheduling after a panic", "id", id, "err", err)
	}
}

// attempt runs the job for group g of round r: the loop check, the
// predelivery stage (predeliver), DKIM signing (sign), then the route's
// transport. It returns
// the attempt with one outcome per recipient; a panic becomes a temporary
// failure.
func (e *Engine) attempt(ctx context.Context, r *engineRound, g *destGroup) (a *jobAttempt) {
	a = e.newAttempt(r, g)
	defer func() { a.content.remove() }()
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("delivery: panic in a delivery attempt", "id", r.id, "domain", g.domain, "transport", a.route.Transport,
				"panic", p, "stack", string(debug.Stack()))
			a.end(rcptOutcome{class: Temporary, reply: "451 4.3.0 internal error during delivery", status: sdk.EnhancedCode{4, 3, 0}})
		}
	}()
	if ctx.Err() != nil {
		a.end(rcptOutcome{class: Temporary, shutdown: true})
		return a
	}
	if g.held != "" {
		a.end(heldOutcome(g.held)) // expired while held: no attempt
		return a
	}
	if g.domain == "" {
		// A recipient without a domain (a bare <postmaster> spooled
		// before the session mapped it to a mailbox) is never routed,
		// and never bounced: the DSN would carry the message to whoever
		// MAIL FROM named, a reflection attack.
		e.log.Warn("delivery: a recipient without a domain fails without a DSN", "id", r.id)
		a.end(rcptOutcome{class: Permanent, reply: "550 5.1.3 recipient address has no domain", status: sdk.EnhancedCode{5, 1, 3}, dropped: true})
		return a
	}
	// A message that went round too often fails, whatever the route.
	hops, err := r.hopCount(e)
	switch {
	case err != nil:
		a.end(rcptOutcome{class: Temporary, reply: "451 4.3.0 cannot read the queued message: " + err.Error(), status: sdk.EnhancedCode{4, 3, 0}})
		return a
	case hops > e.hopLimit:
		a.end(rcptOutcome{class: Permanent, reply: "554 5.4.6 mail loop detected (too many Received header fields)", status: sdk.EnhancedCode{5, 4, 6}})
		return a
	}
	a.hops = hops
	if e.predeliver(ctx, a) && e.sign(a) && e.seal(a) {
		e.deliver(ctx, a)
	}
	return a
}

// deliver hands the attempt's recipients to the route's transport and
// sets their outcomes from its results.
func (e *Engine) deliver(ctx context.Context, a *jobAttempt) {
	rcpts := a.env.Recipients
	if len(rcpts) == 0 {
		return // the predelivery hook moved every recipient elsewhere
	}
	outs := a.outs[:len(rcpts)]
	t := e.opt.Transports[a.route.Transport]
	if t == nil {
		e.log.Error("delivery: no transport by that name (config error); deferring", "id", a.r.id, "domain", a.domain, "transport", a.route.Transport)
		setAll(outs, rcptOutcome{class: Temporary, reply: fmt.Sprintf("451 4.3.5 no transport named %q is configured", a.route.Transport), status: sdk.EnhancedCode{4, 3, 5}})
		return
	}
	results := t.Deliver(ctx, &Job{
		ID:         a.r.id,
		Envelope:   a.env,
		Recipients: rcpts,
		Domain:     a.domain,
		Route:      a.route,
		Size:       a.content.size,
		Open:       a.content.open,
	})
	if len(results) != len(rcpts) {
		e.log.Error("delivery: transport returned the wrong number of results", "id", a.r.id, "transport", a.route.Transport,
			"results", len(results), "rcpts", len(rcpts))
	}
	for i := range outs {
		o := rcptOutcome{class: Temporary, reply: "451 4.3.0 no result from the transport", status: sdk.EnhancedCode{4, 3, 0}}
		if i < len(results) {
			o = outcomeOf(results[i])
		}
		o.idx, o.added = outs[i].idx, outs[i].added
		o.shutdown = o.class == Temporary && ctx.Err() != nil
		outs[i] = o
	}
}

// roundBodyCache is the largest message a round keeps in memory after
// reading it once for the hop count, so its jobs need not read it again.
const roundBodyCache = 256 << 10

// hopCount is the number of Received fields of the message (of a large
// one read from its file, up to one past e.hopLimit), counted once per
// round: taken from the record when an earlier round stored it
// (queue.Message.Hops), else counted in the body Enqueue handed over or
// read from the spool, and then a small message is kept for open.
func (r *engineRound) hopCount(e *Engine) (int, error) {
	r.hopsOnce.Do(func() {
		if r.storedHops > 0 {
			r.hops = r.storedHops
			return
		}
		if r.body != nil { // handed over by Enqueue
			r.hops = message.CountHopsIn(r.body)
			return
		}
		body, err := e.spool.Body(r.id)
		if err != nil {
			r.hopsErr = err
			return
		}
		defer body.Close()
		if r.size > roundBodyCache {
			r.hops, r.hopsErr = message.CountHops(body, e.hopLimit)
			return
		}
		b, err := io.ReadAll(body)
		if err != nil {
			r.hopsErr = err
			return
		}
		r.body = b
		r.hops = message.CountHopsIn(b)
	})
	return r.hops, r.hopsErr
}

// open returns the message for a transport: from memory when hopCount kept
// it, else from the spool.
func (r *engineRound) open(e *Engine) (io.ReadCloser, error) {
	if r.body != nil {
		return io.NopCloser(bytes.NewReader(r.body)), nil
	}
	return e.spool.Body(r.id)
}

// outcomeOf turns a transport's Result into an outcome, with a status
// whose class agrees with the result's class.
func outcomeOf(res Result) rcptOutcome {
	o := rcptOutcome{
		class:     res.Class,
		reply:     formatReply(res.Code, res.Enhanced, res.Text),
		status:    dsn.StatusFromReply(res.Code, res.Enhanced),
		remoteMTA: res.RemoteMTA,
		tlsPolicy: res.TLSPolicy,
		local:     res.Local,
		handoff:   res.Handoff,
	}
	want := map[Class]uint16{Delivered: 2, Temporary: 4, Permanent: 5}[res.Class]
	if !o.status.IsZero() && o.status[0] != want {
		o.status[0] = want
	}
	if o.reply == "" {
		o.reply = res.Class.String()
	}
	return o
}

// formatReply writes a reply as "451 4.7.1 text", leaving out what is
// unknown and not repeating a code the text already starts with.
func formatReply(code int, enh sdk.EnhancedCode, text string) string {
	text = strings.Join(strings.Fields(text), " ")
	var parts []string
	if code > 0 {
		c := strconv.Itoa(code)
		if text == c || strings.HasPrefix(text, c+" ") || strings.HasPrefix(text, c+"-") {
			return text
		}
		parts = append(parts, c)
	}
	if !enh.IsZero() && !strings.HasPrefix(text, enh.String()+" ") && text != enh.String() {
		parts = append(parts, enh.String())
	}
	if text != "" {
		parts = append(parts, text)
	}
	return strings.Join(parts, " ")
}

// notification is one delivered/deferred/bounced stage call.
type notification struct {
	stage sdk.Stage
	rcpt  envelope.Recipient
}

// successAction is the action of a success DSN about o, a Delivered
// outcome: "" when that DSN is the next hop's to send (it took NOTIFY).
func (o rcptOutcome) successAction() dsn.Action {
	switch {
	case o.expanded:
		return dsn.ActionExpanded
	case o.handoff == HandoffDSN:
		return ""
	case o.handoff == HandoffRelayed:
		return dsn.ActionRelayed
	}
	return dsn.ActionDelivered
}

// report is o as a DSN entry for rc.
func (o rcptOutcome) report(rc envelope.Recipient, a dsn.Action, at time.Time) dsn.RecipientReport {
	st := o.status
	switch {
	case st.IsZero():
	case a == dsn.ActionFailed:
		st[0] = 5
	case a == dsn.ActionDelayed:
		st[0] = 4
	default:
		st[0] = 2
	}
	return dsn.RecipientReport{
		Recipient:   rc,
		Action:      a,
		Status:      st,
		Diagnostic:  o.reply,
		RemoteMTA:   o.remoteMTA,
		Local:       o.local,
		LastAttempt: at,
	}
}

// notify dispatches the notification stages; their verdicts are ignored.
func (e *Engine) notify(ctx context.Context, r *engineRound, notes []notification) {
	if e.opt.Hooks == nil || len(notes) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for _, n := range notes {
		env := cloneEnvelope(&r.env)
		rc := n.rcpt
		e.opt.Hooks.Dispatch(ctx, &hook.Request{Stage: n.stage, Envelope: env, Rcpt: &rc, Arg: rc.Address.String()})
	}
}

// cloneEnvelope copies env and its recipients.
func cloneEnvelope(env *envelope.Envelope) *envelope.Envelope {
	c := *env
	c.Recipients = slices.Clone(env.Recipients)
	return &c
}

// cloneMessage copies m deep enough for record to change it.
func cloneMessage(m *queue.Message) *queue.Message {
	c := *m
	c.Envelope = *cloneEnvelope(&m.Envelope)
	c.Recipients = slices.Clone(m.Recipients)
	return &c
}
