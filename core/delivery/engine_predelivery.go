package delivery

// This file is the predelivery stage of a job: the hook, then the changes
// it asks for, in the shape of the SMTP session's finish for the data
// stage (core/smtp/session_data.go).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
)

// MaxRecipients is the most recipients a predelivery hook may take a
// message to (Postfix's virtual_alias_expansion_limit): a list that
// would add more defers the job with 4.5.3.
const MaxRecipients = 1000

// errTooManyRecipients: a predelivery list would take the message past
// MaxRecipients.
var errTooManyRecipients = errors.New("delivery: too many recipients")

// predeliver runs the predelivery stage for a and applies what it asks:
// dispatch, act on the verdict, then the effects (applyEffects). It
// reports whether a goes on to its transport; when not, a's outcomes say
// why.
//
// The hook sees the message (hook.Request.Message) and the job: the
// envelope with the job's recipients (Rcpt is the first). Reject bounces
// them now, Defer reschedules them, Drop discards them without a DSN;
// Continue and Accept deliver, with the effects. Effects change this
// attempt, never the queued message, except Recipients, which the queued
// message records (see changeRecipients).
func (e *Engine) predeliver(ctx context.Context, a *jobAttempt) bool {
	if e.opt.Hooks == nil {
		return true
	}
	res := e.opt.Hooks.Dispatch(ctx, &hook.Request{
		Stage:    sdk.StagePredelivery,
		Envelope: a.env,
		Rcpt:     &a.env.Recipients[0],
		Arg:      a.domain,
		Message:  message.NewView(a.content.size, a.content.open),
	})
	switch d := res.Decision; d.Verdict {
	case sdk.Reject, sdk.Defer:
		rep := hook.DefaultReply(sdk.StagePredelivery, d)
		o := rcptOutcome{class: Permanent, reply: formatReply(rep.Code, rep.Enhanced, rep.Message), status: dsn.StatusFromReply(rep.Code, rep.Enhanced)}
		if d.Verdict == sdk.Defer {
			o.class, o.shutdown = Temporary, ctx.Err() != nil
		}
		a.end(o)
		return false
	case sdk.Drop:
		e.log.Info("delivery: dropped by a predelivery hook", "id", a.r.id, "domain", a.domain,
			"rcpts", len(a.outs), "hook", res.Handler, "reason", d.Reason)
		a.end(rcptOutcome{class: Delivered, reply: "dropped by predelivery hook " + res.Handler, dropped: true})
		return false
	}
	return e.applyEffects(a, &res.Effects, res.Handler)
}

// applyEffects applies a predelivery hook's effects, as the chain checked
// them, to a: Route (transport and next hop), Sender (this attempt's
// envelope sender; bounces still go to the message's own), Recipients
// (changeRecipients), then the content the transport reads: Body,
// RemoveHeaders, AddHeaders on top. What can fail is tried before
// anything is applied, as finish rewrites the content before it commits;
// an effect that cannot be applied defers the job (false).
func (e *Engine) applyEffects(a *jobAttempt, eff *hook.Effects, handler string) bool {
	fail := func(reply string, status sdk.EnhancedCode, err error) bool {
		e.log.Error("delivery: a predelivery hook's changes cannot be applied; deferring", "id", a.r.id, "domain", a.domain,
			"hook", handler, "err", err)
		a.end(rcptOutcome{class: Temporary, reply: reply, status: status})
		return false
	}
	var change *rcptChange
	if len(eff.Recipients) > 0 {
		var err error
		if change, err = changeRecipients(a, eff.Recipients); err != nil {
			return fail(fmt.Sprintf("451 4.5.3 more than %d recipients after the predelivery hook's changes", MaxRecipients), sdk.EnhancedCode{4, 5, 3}, err)
		}
	}
	if eff.Body != nil || len(eff.RemoveHeaders) > 0 || len(eff.AddHeaders) > 0 {
		c, err := rewriteJob(a, eff)
		if err != nil {
			return fail("451 4.3.0 cannot apply the predelivery hook's changes", sdk.EnhancedCode{4, 3, 0}, err)
		}
		a.content = c
		a.env.TLSOptional = tlsOptional(a.env, c)
	}
	if rt := eff.Route; rt != nil {
		if rt.Transport != "" {
			a.route.Transport = rt.Transport
		}
		if rt.Via != a.route.Via {
			a.route.Auth = nil // the route's credentials are for its own next hop only
		}
		a.route.Via = rt.Via
	}
	if eff.Sender != nil {
		a.env.Sender = *eff.Sender
	}
	if change != nil {
		e.log.Info("delivery: recipients changed by a predelivery hook", "id", a.r.id, "domain", a.domain, "hook", handler,
			"rcpts", len(change.deliver), "added", len(change.added), "removed", len(change.outs)-len(change.deliver))
		a.env.Recipients, a.outs, a.added = change.deliver, change.outs, change.added
	}
	return true
}

// rcptChange is what a predelivery hook's recipient list does to a job.
type rcptChange struct {
	deliver []envelope.Recipient // the job's recipients now, in the list's order
	outs    []rcptOutcome        // one per deliver (whom each is), then the outcomes of those left out
	added   []envelope.Recipient // recipients new to the message
}

// changeRecipients works out what list, the recipients a predelivery hook
// gave for job a (each mailbox once: the chain saw to it), does. The job's
// recipients become the listed addresses, compared by mailbox
// (envelope.Address.Mailbox):
//
//   - a listed recipient of the job stays, with its DSN parameters;
//   - a listed address the message does not have is added to it: recorded
//     with the attempt, delivered in this job when it is in the job's
//     domain, else pending for a job of its own (with its own route and
//     predelivery), which the message's next round, due at once, makes;
//   - a listed address the message already has elsewhere (another domain,
//     or done) is not added again;
//   - a recipient of the job that is not listed is finished without
//     delivery. When the list names anyone new it was expanded (an alias,
//     a list): recorded delivered, with an "expanded" DSN if its NOTIFY
//     asked for SUCCESS, as RFC 3461 §6.2.7 and Postfix do; else it was
//     dropped: recorded delivered, no DSN, as a predelivery Drop is.
//     Neither gets a delivered notification.
//
// When exactly one recipient was left out, the new ones inherit its DSN
// parameters (RFC 3461 §6.2.7.3): its NOTIFY without SUCCESS (NEVER if
// nothing is left), which its "expanded" DSN answered, and its ORCPT, or
// "rfc822;" and its address. Otherwise they get none. The message may not
// grow past MaxRecipients (errTooManyRecipients). changeRecipients
// changes nothing.
func changeRecipients(a *jobAttempt, listed []envelope.Address) (*rcptChange, error) {
	job := a.env.Recipients
	var left []int // the job's recipients not listed
	for i, rc := range job {
		if !slices.ContainsFunc(listed, func(x envelope.Address) bool { return x.Mailbox() == rc.Address.Mailbox() }) {
			left = append(left, i)
		}
	}
	c := &rcptChange{}
	expanded := false
	for _, addr := range listed {
		same := func(x envelope.Recipient) bool { return x.Address.Mailbox() == addr.Mailbox() }
		if i := slices.IndexFunc(job, same); i >= 0 {
			c.deliver = append(c.deliver, job[i])
			c.outs = append(c.outs, rcptOutcome{idx: a.outs[i].idx})
			continue
		}
		expanded = true
		if slices.ContainsFunc(a.r.env.Recipients, same) {
			continue
		}
		rc := envelope.Recipient{Address: addr}
		if len(left) == 1 {
			rc.Notify, rc.ORCPT = inheritDSN(job[left[0]])
		}
		c.added = append(c.added, rc)
		if addr.DomainFold() == a.domain {
			c.deliver = append(c.deliver, rc)
			c.outs = append(c.outs, rcptOutcome{added: len(c.added)})
		}
	}
	if n := len(a.r.env.Recipients) + len(c.added); len(c.added) > 0 && n > MaxRecipients {
		return nil, fmt.Errorf("delivery: %d recipients: %w", n, errTooManyRecipients)
	}
	for _, i := range left {
		o := rcptOutcome{idx: a.outs[i].idx, class: Delivered, reply: "dropped by a predelivery hook's recipient list", dropped: true}
		if expanded {
			o = rcptOutcome{idx: a.outs[i].idx, class: Delivered, reply: "250 2.0.0 expanded by a predelivery hook", status: sdk.EnhancedCode{2, 0, 0}, expanded: true}
		}
		c.outs = append(c.outs, o)
	}
	return c, nil
}

// inheritDSN is the NOTIFY and ORCPT of a recipient that replaces rc (see
// changeRecipients).
func inheritDSN(rc envelope.Recipient) (envelope.Notify, string) {
	n := rc.Notify &^ envelope.NotifySuccess
	if n == 0 && rc.Notify != 0 {
		n = envelope.NotifyNever
	}
	orcpt := rc.ORCPT
	if addr := rc.Address.String(); orcpt == "" && !strings.ContainsFunc(addr, func(r rune) bool { return r >= utf8.RuneSelf }) {
		orcpt = "rfc822;" + smtp.EncodeXText(addr)
	}
	return n, orcpt
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
func rewriteJob(a *jobAttempt, eff *hook.Effects) (jobContent, error) {
	var src io.Reader
	estimate := a.content.size
	if eff.Body != nil {
		src, estimate = message.Replacement(eff.Body), int64(len(eff.Body))
	} else {
		rc, err := a.content.open()
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

// tlsOptional is Envelope.TLSOptional for env's message as a predelivery
// hook rewrote it (c): the field decides, as the session decided it on the
// message it spooled (a hook may remove "TLS-Required: No", or add it),
// and REQUIRETLS overrides it (RFC 8689 §4.1). A header that cannot be
// read asks nothing.
func tlsOptional(env *envelope.Envelope, c jobContent) bool {
	if env.RequireTLS {
		return false
	}
	fields, err := message.NewView(c.size, c.open).Header()
	return err == nil && message.TLSRequiredNo(fields)
}
