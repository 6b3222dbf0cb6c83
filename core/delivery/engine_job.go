package delivery

// This file is one job of a delivery round: the attempt (loop check,
// predelivery hook, transport) and the recording of its outcome.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
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
	idx       int // into Envelope.Recipients
	class     Class
	reply     string           // becomes RecipientState.LastReply and the DSN's Diagnostic-Code
	status    sdk.EnhancedCode // RFC 3463 status for a DSN; zero = default of the action
	remoteMTA string
	dropped   bool // predelivery Drop: recorded delivered, no DSN, no notification
	shutdown  bool // cut short by shutdown: not an attempt
	expired   bool // a temporary failure past MaxLifetime
}

// runJob performs and records one job; it runs in its own goroutine.
func (e *Engine) runJob(ctx context.Context, r *engineRound, g *destGroup) {
	defer e.jobs.Done()
	start := time.Now()
	route, outs := e.attempt(ctx, r, g)
	took := time.Since(start)

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
		notes, next = e.record(ctx, r, g, route, outs, last, took)
	}()
	r.mu.Unlock()

	e.notify(ctx, r, notes)
	e.jobEnded(r, g, last, next)
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

// attempt runs the job for group g of round r and returns the route used
// and one outcome per recipient of g. A panic becomes a temporary failure.
//
// The predelivery hook sees the message (hook.Request.Message) and its
// effects change this attempt only, never the queued message: Route,
// Sender (the job's envelope sender), and Body, RemoveHeaders and
// AddHeaders, applied in that order to a copy the job's Open returns.
// Recipients are not supported at predelivery (the job's recipients are
// the destination's): they are logged and ignored. An effect that cannot
// be applied defers the job.
func (e *Engine) attempt(ctx context.Context, r *engineRound, g *destGroup) (route Route, outs []rcptOutcome) {
	outs = make([]rcptOutcome, len(g.idx))
	for i, idx := range g.idx {
		outs[i].idx = idx
	}
	all := func(o rcptOutcome) {
		for i := range outs {
			idx := outs[i].idx
			outs[i] = o
			outs[i].idx = idx
		}
	}
	defer func() {
		if p := recover(); p != nil {
			e.log.Error("delivery: panic in a delivery attempt", "id", r.id, "domain", g.domain, "transport", route.Transport,
				"panic", p, "stack", string(debug.Stack()))
			all(rcptOutcome{class: Temporary, reply: "451 4.3.0 internal error during delivery", status: sdk.EnhancedCode{4, 3, 0}})
		}
	}()
	route = selectRoute(e.cfg, g.domain)
	if ctx.Err() != nil {
		all(rcptOutcome{class: Temporary, shutdown: true})
		return route, outs
	}

	// A message that went round too often fails, whatever the route.
	hops, err := r.hopCount(e)
	switch {
	case err != nil:
		all(rcptOutcome{class: Temporary, reply: "451 4.3.0 cannot read the queued message: " + err.Error(), status: sdk.EnhancedCode{4, 3, 0}})
		return route, outs
	case hops > e.hopLimit:
		all(rcptOutcome{class: Permanent, reply: "554 5.4.6 mail loop detected (too many Received header fields)", status: sdk.EnhancedCode{5, 4, 6}})
		return route, outs
	}

	env := cloneEnvelope(&r.env)
	rcpts := make([]envelope.Recipient, len(g.idx))
	for i, idx := range g.idx {
		rcpts[i] = env.Recipients[idx]
	}

	content := jobContent{size: r.size, open: func() (io.ReadCloser, error) { return r.open(e) }}
	if e.opt.Hooks != nil {
		res := e.opt.Hooks.Dispatch(ctx, &hook.Request{
			Stage:    sdk.StagePredelivery,
			Envelope: env,
			Rcpt:     &rcpts[0],
			Arg:      g.domain,
			Message:  message.NewView(r.size, content.open),
		})
		d := res.Decision
		switch d.Verdict {
		case sdk.Reject, sdk.Defer:
			rep := hook.DefaultReply(sdk.StagePredelivery, d)
			class := Permanent
			if d.Verdict == sdk.Defer {
				class = Temporary
			}
			all(rcptOutcome{class: class, reply: formatReply(rep.Code, rep.Enhanced, rep.Message), status: dsn.StatusFromReply(rep.Code, rep.Enhanced)})
			if class == Temporary && ctx.Err() != nil {
				all(rcptOutcome{class: Temporary, shutdown: true})
			}
			return route, outs
		case sdk.Drop:
			e.log.Info("delivery: dropped by a predelivery hook", "id", r.id, "domain", g.domain,
				"rcpts", len(rcpts), "hook", res.Handler, "reason", d.Reason)
			all(rcptOutcome{class: Delivered, reply: "dropped by predelivery hook " + res.Handler, dropped: true})
			return route, outs
		}
		eff := &res.Effects
		if rt := eff.Route; rt != nil {
			if rt.Transport != "" {
				route.Transport = rt.Transport
			}
			route.Via = rt.Via
		}
		// This attempt's envelope sender, then its content: Body, then
		// RemoveHeaders, then AddHeaders on top. The queued message stays
		// as it is; bounces still go to its own sender.
		if a := eff.Sender; a != nil { // checked by the chain
			env.Sender = *a
		}
		if eff.Body != nil || len(eff.RemoveHeaders) > 0 || len(eff.AddHeaders) > 0 {
			c, err := rewriteJob(r, e, eff)
			if err != nil {
				e.log.Error("delivery: applying a predelivery hook's changes; deferring", "id", r.id, "domain", g.domain, "err", err)
				all(rcptOutcome{class: Temporary, reply: "451 4.3.0 cannot apply the predelivery hook's changes", status: sdk.EnhancedCode{4, 3, 0}})
				return route, outs
			}
			defer c.remove()
			content = c
		}
		if len(eff.Recipients) > 0 {
			e.log.Warn("delivery: predelivery hooks cannot change recipients; ignored", "id", r.id, "domain", g.domain)
		}
	}

	t := e.opt.Transports[route.Transport]
	if t == nil {
		e.log.Error("delivery: no transport by that name (config error); deferring", "id", r.id, "domain", g.domain, "transport", route.Transport)
		all(rcptOutcome{class: Temporary, reply: fmt.Sprintf("451 4.3.5 no transport named %q is configured", route.Transport), status: sdk.EnhancedCode{4, 3, 5}})
		return route, outs
	}
	id := r.id
	job := &Job{
		ID:         id,
		Envelope:   env,
		Recipients: rcpts,
		Domain:     g.domain,
		Route:      route,
		Size:       content.size,
		Open:       content.open,
	}
	results := t.Deliver(ctx, job)
	if len(results) != len(rcpts) {
		e.log.Error("delivery: transport returned the wrong number of results", "id", id, "transport", route.Transport,
			"results", len(results), "rcpts", len(rcpts))
	}
	for i := range outs {
		if i >= len(results) {
			outs[i].class, outs[i].reply, outs[i].status = Temporary, "451 4.3.0 no result from the transport", sdk.EnhancedCode{4, 3, 0}
			continue
		}
		o := outcomeOf(results[i])
		o.idx = outs[i].idx
		outs[i] = o
	}
	if ctx.Err() != nil {
		for i := range outs {
			if outs[i].class == Temporary {
				outs[i].shutdown = true
			}
		}
	}
	return route, outs
}

// roundBodyCache is the largest message a round keeps in memory after
// reading it once for the hop count, so its jobs need not read it again.
const roundBodyCache = 256 << 10

// hopCount is the number of Received fields of the message (up to one past
// e.hopLimit), read once per round. A small message is kept for open.
func (r *engineRound) hopCount(e *Engine) (int, error) {
	r.hopsOnce.Do(func() {
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
		r.hops, r.hopsErr = message.CountHops(bytes.NewReader(b), e.hopLimit)
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

// record applies a job's outcomes: it queues the DSN they call for, then
// stores the recipients' new states with one Spool.Update or, when this
// was the round's last job and every recipient is now final, deletes the
// message. The last job of a round not cut short by shutdown also sends
// the delay warning and sets the message's next attempt. It runs with
// r.mu held and returns the notifications to dispatch and the message's
// next attempt if it set one.
func (e *Engine) record(ctx context.Context, r *engineRound, g *destGroup, route Route, outs []rcptOutcome, last bool, took time.Duration) ([]notification, time.Time) {
	bg := context.WithoutCancel(ctx) // what was done must be recorded, shutdown or not
	now := e.now()
	interrupted := ctx.Err() != nil
	m := cloneMessage(r.msg)
	nullSender := m.Envelope.Sender.IsNull()

	var reports []dsn.RecipientReport
	var notes []notification
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
		rs.LastReply, rs.Updated = o.reply, now
		rs.Attempts++
		r.last[o.idx] = *o
		switch o.class {
		case Delivered:
			rs.Status = queue.Delivered
			if !o.dropped && !nullSender && dsn.Wants(rc.Notify, dsn.ActionDelivered) {
				reports = append(reports, o.report(rc, dsn.ActionDelivered, now))
			}
		case Permanent:
			rs.Status = queue.Failed
			if nullSender || dsn.Wants(rc.Notify, dsn.ActionFailed) {
				reports = append(reports, o.report(rc, dsn.ActionFailed, now))
			}
		default:
			rs.Status = queue.Deferred
		}
	}

	// The delay warning, once per message (recorded in DelayWarned): at the
	// end of the first round that ends at or after Created+DelayWarning
	// with recipients still deferred. The DSN is queued before the record,
	// so a crash in between can send it twice, never not at all.
	if last && !interrupted && !nullSender && e.cfg.DelayWarning > 0 && !allFinal(m) {
		threshold := m.Created.Add(e.cfg.DelayWarning)
		if !now.Before(threshold) && !m.DelayWarned {
			m.DelayWarned = true
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
		}
	}

	if len(reports) > 0 {
		if err := e.queueDSN(bg, m, reports, now); err != nil {
			// Without its DSN a failure must not be final: retry it, and
			// bounce it again then.
			e.log.Error("delivery: cannot queue a DSN; the failed recipients stay deferred", "id", m.ID, "err", err)
			for i := range outs {
				if o := &outs[i]; !o.shutdown && o.class == Permanent {
					o.class = Temporary
					m.Recipients[o.idx].Status = queue.Deferred
				}
			}
		}
	}

	final := allFinal(m)
	var err error
	var next time.Time
	if final && last {
		err = e.spool.Delete(bg, m.ID)
	} else {
		schedule := last && !interrupted
		if schedule {
			m.NextAttempt = now.Add(e.jitter(RetryDelay(e.cfg.Retry, m.Attempts)))
			m.Attempts++
			next = m.NextAttempt
		}
		// The round holds the message's lease, and its jobs record one at
		// a time (r.mu): r.msg is what is stored, and m replaces it whole,
		// with nothing decoded on the spool's commit loop.
		err = e.spool.Replace(bg, r.msg, m)
	}
	if err != nil {
		e.log.Error("delivery: recording an attempt", "id", m.ID, "domain", g.domain, "err", err)
	}
	r.msg = m

	// Counters, metrics, notifications, the log line.
	var nDelivered, nDeferred, nFailed int
	reply := ""
	for _, o := range outs {
		if o.shutdown {
			continue
		}
		if e.opt.Observer != nil {
			e.opt.Observer.Attempted(g.domain, o.class, took)
		}
		rc := m.Envelope.Recipients[o.idx]
		switch o.class {
		case Delivered:
			nDelivered++
			if !o.dropped {
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
	e.log.Info("delivery", "id", m.ID, "domain", g.domain, "transport", route.Transport, "rcpts", len(outs),
		"class", class, "delivered", nDelivered, "deferred", nDeferred, "failed", nFailed,
		"reply", reply, "took", took, "attempts", m.Attempts, "done", final && last)
	return notes, next
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

// jobContent is what a job's Open returns: the queued message, or the
// copy a predelivery hook's changes made of it (in memory, or in a
// temporary file that remove deletes).
type jobContent struct {
	size int64
	open func() (io.ReadCloser, error)
	path string // the temporary file, "" if none
}

// remove deletes the temporary file, if any.
func (c jobContent) remove() {
	if c.path != "" {
		os.Remove(c.path)
	}
}

// rewriteJob builds the content a predelivery hook asked for, once per
// job: eff.Body or the queued message, without the fields named in
// eff.RemoveHeaders, with eff.AddHeaders on top. A result under
// roundBodyCache is kept in memory, a larger one goes to a temporary file
// (under os.TempDir) that the caller removes after the job.
func rewriteJob(r *engineRound, e *Engine, eff *hook.Effects) (jobContent, error) {
	var src io.Reader
	estimate := r.size
	if eff.Body != nil {
		src, estimate = message.Replacement(eff.Body), int64(len(eff.Body))
	} else {
		rc, err := r.open(e)
		if err != nil {
			return jobContent{}, fmt.Errorf("delivery: reading the queued message: %w", err)
		}
		defer rc.Close()
		src = rc
	}
	if estimate < roundBodyCache {
		var b bytes.Buffer
		if err := message.Rewrite(&b, src, eff.AddHeaders, eff.RemoveHeaders); err != nil {
			return jobContent{}, fmt.Errorf("delivery: rewriting the message: %w", err)
		}
		data := b.Bytes()
		return jobContent{size: int64(len(data)), open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(data)), nil
		}}, nil
	}
	f, err := os.CreateTemp("", "gateway-predelivery-*.eml")
	if err != nil {
		return jobContent{}, fmt.Errorf("delivery: rewriting the message: %w", err)
	}
	c := jobContent{path: f.Name()}
	w := bufio.NewWriterSize(f, 64<<10)
	err = message.Rewrite(w, src, eff.AddHeaders, eff.RemoveHeaders)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.remove()
		return jobContent{}, fmt.Errorf("delivery: rewriting the message: %w", err)
	}
	fi, err := os.Stat(c.path)
	if err != nil {
		c.remove()
		return jobContent{}, fmt.Errorf("delivery: rewriting the message: %w", err)
	}
	c.size = fi.Size()
	c.open = func() (io.ReadCloser, error) { return os.Open(c.path) }
	return c, nil
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
