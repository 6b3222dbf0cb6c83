package gateway

// This file is the pickup part: the server's side of `gateway sendmail`.
// It reads the messages local programs left in data_dir/pickup and submits
// each through an in-process SMTP session, as a local authenticated
// submission, so that they meet the hooks, the relay rule, the limits and
// the spool that SMTP mail meets. What the server refuses for good, or
// defers past delivery.max_lifetime, comes back to the sender as a failure
// DSN, and its file is kept in failed/.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/core/pickup"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
)

// Pickup timing: a pass at start and then every pickupInterval; a file
// whose submission was deferred waits from pickupInterval, doubling, up
// to pickupMaxWait before its next try.
const (
	pickupInterval = time.Second
	pickupMaxWait  = 5 * time.Minute
	pickupTimeout  = 5 * time.Minute // one submission
)

// PickupDir is the pickup directory of a gateway whose data_dir is dataDir:
// where `gateway sendmail` writes and the server reads.
func PickupDir(dataDir string) string { return filepath.Join(dataDir, "pickup") }

// pickupPart submits the messages of the pickup directory.
type pickupPart struct {
	dir      string
	hostname string        // ours: the Remote-MTA of the pickup's refusals
	srv      *smtp.Server  // never listens: each submission is a ServeConn
	maxSize  int64         // of a file: the largest message and its envelope
	lifetime time.Duration // delivery.max_lifetime: a file deferred longer fails
	// queueDSN queues a failure report to the sender of a refused file
	// (the engine's QueueDSN).
	queueDSN func(ctx context.Context, rep *dsn.Report, about string) error
	log      *slog.Logger
	waits    map[string]pickupWait // files deferred, by name
	sweepAt  time.Time             // no Sweep before: one failed
	// sent are files whose message the spool has but that could not be
	// removed or rewritten: this run does not submit them again.
	sent map[string]bool
}

// pickupWait is when a deferred file is tried again, and how long it
// waited last.
type pickupWait struct {
	next time.Time
	wait time.Duration
}

// newPickup prepares the pickup directory and builds the part. Its
// sessions have the first listener's limits, no TLS and no AUTH, and may
// relay: the local user is authenticated by the file system.
func (g *Gateway) newPickup() (*pickupPart, error) {
	dir := PickupDir(g.cfg.DataDir)
	if err := pickup.Prepare(dir); err != nil {
		return nil, err
	}
	if err := pickup.CheckOwner(dir); err != nil {
		return nil, err
	}
	if err := pickup.CheckReachable(dir); err != nil {
		g.log.Warn("pickup: gateway sendmail works only for the gateway's own user", "err", err)
	}
	l := g.cfg.Listeners[0]
	l.Name, l.Address, l.AuthRequired, l.TLS = "pickup", "", false, nil
	opt, err := g.smtpOptions(l)
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	opt.RelayAuthenticated, opt.Auth, opt.ETRN = true, nil, nil
	srv, err := smtp.NewServer(opt)
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	maxSize := int64(1 << 40)
	if l.MaxMessageSize > 0 {
		maxSize = l.MaxMessageSize + 1<<20 // the envelope part, generously
	}
	lifetime := g.cfg.Delivery.MaxLifetime
	if lifetime <= 0 {
		lifetime = config.DefaultDelivery().MaxLifetime
	}
	return &pickupPart{
		dir: dir, hostname: g.cfg.Hostname, srv: srv, maxSize: maxSize, lifetime: lifetime, queueDSN: g.engine.QueueDSN,
		log: g.log.With("part", "pickup"), waits: map[string]pickupWait{}, sent: map[string]bool{},
	}, nil
}

// run makes a pass over the directory at once and then every
// pickupInterval until ctx is done. A submission in flight when ctx ends
// finishes (within pickupTimeout and the server's shutdown).
func (p *pickupPart) run(ctx context.Context) error {
	t := time.NewTicker(pickupInterval)
	defer t.Stop()
	for {
		p.pass(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pass submits every file that is not waiting after a deferral.
func (p *pickupPart) pass(ctx context.Context, now time.Time) {
	if !now.Before(p.sweepAt) {
		if err := pickup.Sweep(p.dir, now); err != nil {
			p.sweepAt = now.Add(pickupMaxWait)
			p.log.Warn("pickup: cannot move stray entries to failed/; will try again", "in", pickupMaxWait, "err", err)
		}
	}
	names, err := pickup.List(p.dir)
	if err != nil {
		p.log.Warn("pickup: list", "err", err)
		return
	}
	present := make(map[string]bool, len(names))
	for _, name := range names {
		present[name] = true
		if ctx.Err() != nil {
			return
		}
		if w, ok := p.waits[name]; (ok && now.Before(w.next)) || p.sent[name] {
			continue
		}
		p.take(ctx, name, now)
	}
	for name := range p.waits {
		if !present[name] {
			delete(p.waits, name)
		}
	}
	for name := range p.sent {
		if !present[name] {
			delete(p.sent, name)
		}
	}
}

// take submits one file and settles it: removed once the spool has it,
// moved to failed/ when refused for good, kept when deferred.
func (p *pickupPart) take(ctx context.Context, name string, now time.Time) {
	m, err := pickup.Open(p.dir, name, p.maxSize)
	switch {
	case errors.Is(err, pickup.ErrRefused):
		if err := pickup.Fail(p.dir, name); err != nil {
			p.log.Error("pickup: file refused, and it cannot be moved to failed/; will try again", "file", name,
				"refused", err)
			p.later(name, now)
			return
		}
		p.log.Error("pickup: file refused; moved to failed/", "file", name, "err", err)
		return
	case errors.Is(err, os.ErrNotExist):
		return
	case err != nil:
		p.log.Warn("pickup: cannot read", "file", name, "err", err)
		p.later(name, now)
		return
	}
	defer m.Close()
	// A submission under way finishes when the gateway stops: the server's
	// shutdown bounds it.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pickupTimeout)
	defer cancel()
	env := &envelope.Envelope{
		Sender: m.Env.Sender, Recipients: m.Env.Recipients, Ret: m.Env.Ret, EnvID: m.Env.EnvID,
		Body: m.Env.Body, SMTPUTF8: m.Env.SMTPUTF8, Received: m.Created,
	}
	res, err := inject.Submit(sctx, p.srv, inject.Submission{
		Client:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0),
		AuthUser:  fmt.Sprintf("uid=%d", m.Env.UID),
		LocalName: "pickup",
		Envelope:  env,
		Message:   m.Body(),
	}, p.log)
	p.settle(sctx, m, env, res, err, now)
}

// pickupOutcome is what a submission did with a file's recipients.
type pickupOutcome struct {
	accepted int
	kept     []envelope.Recipient // deferred: tried again
	failed   []envelope.Recipient // refused for good, or deferred past the lifetime
	reports  []dsn.RecipientReport
}

// classify puts each recipient of m where its reply says, with a log line and
// a failure report (if it wants one) for each that failed. A deferred
// recipient of a file older than the lifetime fails too (5.4.7), as the
// engine expires queued mail.
func (p *pickupPart) classify(m *pickup.Message, res smtp.Result, txn smtp.Reply, err error, now time.Time) pickupOutcome {
	var out pickupOutcome
	expired := now.Sub(m.Created) >= p.lifetime
	for i, r := range m.Env.Recipients {
		reply := rcptReply(res, i, txn, err)
		status := reply.Enhanced
		switch {
		case reply.Code/100 == 2:
			out.accepted++
			continue
		case reply.Code/100 == 5:
		case expired:
			status = sdk.EnhancedCode{5, 4, 7}
		default:
			out.kept = append(out.kept, r)
			continue
		}
		out.failed = append(out.failed, r)
		p.log.Warn("pickup: recipient failed; the sender is told, the file kept in failed/", "file", m.Name,
			"uid", m.Env.UID, "from", m.Env.Sender.String(), "rcpt", r.Address.String(), "reply", reply.String(),
			"expired", expired && reply.Code/100 != 5)
		if status.IsZero() || status[0] != 5 {
			status = sdk.EnhancedCode{5, 0, 0}
		}
		if dsn.Wants(r.Notify, dsn.ActionFailed) {
			out.reports = append(out.reports, dsn.RecipientReport{
				Recipient: r, Action: dsn.ActionFailed, Status: status, Diagnostic: reply.String(),
				RemoteMTA: p.hostname, LastAttempt: now,
			})
		}
	}
	return out
}

// bounce queues the failure report of m to its sender, as a queued
// message's would be; the null sender gets none (the file in failed/ is
// the operator's trace).
func (p *pickupPart) bounce(ctx context.Context, m *pickup.Message, env *envelope.Envelope, reports []dsn.RecipientReport, now time.Time) {
	if len(reports) == 0 {
		return
	}
	if m.Env.Sender.IsNull() {
		p.log.Warn("pickup: no DSN to the null sender", "file", m.Name, "rcpts", len(reports))
		return
	}
	rep := &dsn.Report{To: m.Env.Sender, Envelope: env, Reports: reports, Original: m.Body(), Now: now}
	if err := p.queueDSN(ctx, rep, "pickup "+m.Name); err != nil {
		p.log.Error("pickup: cannot queue the DSN; the sender is not told (the file is in failed/)",
			"file", m.Name, "err", err)
	}
}

// settle acts on a submission's outcome per recipient: those the spool
// took are done; those refused for good (or deferred past the lifetime)
// get a failure DSN and go to failed/; those deferred stay in the pickup
// directory for a later pass. The file is rewritten only when its
// recipients part ways.
func (p *pickupPart) settle(ctx context.Context, m *pickup.Message, env *envelope.Envelope, res smtp.Result, err error, now time.Time) {
	var txn smtp.Reply
	if err != nil && !errors.As(err, &txn) {
		p.log.Warn("pickup: submission failed; will try again", "file", m.Name, "err", err)
		p.later(m.Name, now)
		return
	}
	out := p.classify(m, res, txn, err, now)
	accepted, kept, failed := out.accepted, out.kept, out.failed
	if accepted == 0 && len(failed) == 0 {
		p.log.Info("pickup: deferred; will try again", "file", m.Name, "reply", firstReply(res, txn).String())
		p.later(m.Name, now)
		return
	}
	// The report goes first: a crash before the file is settled submits
	// it again, and reports again, rather than never.
	p.bounce(ctx, m, env, out.reports, now)
	if err := p.split(m, kept, failed); err != nil {
		if accepted > 0 {
			// Submitting it again would deliver it twice.
			p.sent[m.Name] = true
			p.log.Error("pickup: the message is queued but its file cannot be removed; "+
				"remove it, or it is submitted again when the gateway restarts",
				"file", m.Name, "id", res.ID, "err", err)
			return
		}
		p.log.Error("pickup: cannot settle the file; it will be submitted again", "file", m.Name, "err", err)
		p.later(m.Name, now)
		return
	}
	if len(kept) > 0 {
		p.log.Info("pickup: recipients deferred; will try again", "file", m.Name, "rcpts", len(kept))
		p.later(m.Name, now)
	}
	if accepted > 0 {
		p.log.Info("pickup: queued", "file", m.Name, "uid", m.Env.UID, "from", m.Env.Sender.String(),
			"rcpts", accepted, "id", res.ID)
	}
}

// split puts the failed recipients' copy into failed/ under the file's
// name, then replaces the file with the kept recipients' copy or removes
// it. A crash in between submits the file again: at least once, never
// lost.
func (p *pickupPart) split(m *pickup.Message, kept, failed []envelope.Recipient) error {
	env := *m.Env
	if len(failed) > 0 {
		env.Recipients = failed
		to, err := pickup.FailedName(p.dir, m.Name)
		if err != nil {
			return err
		}
		if err := pickup.WriteName(filepath.Join(p.dir, pickup.FailedDir), to, &env, m.Body()); err != nil {
			return err
		}
	}
	if len(kept) == 0 {
		return pickup.Remove(p.dir, m.Name)
	}
	env.Recipients = kept
	return pickup.WriteName(p.dir, m.Name, &env, m.Body())
}

// rcptReply is the reply that decides recipient i: its own reply to RCPT
// when the message went through, or when MAIL was accepted and its RCPT
// was not; otherwise the transaction's (MAIL's, DATA's, a 421).
func rcptReply(res smtp.Result, i int, txn smtp.Reply, err error) smtp.Reply {
	if i >= len(res.Rcpts) {
		return txn
	}
	r := res.Rcpts[i]
	if err == nil || (res.Mail.Code/100 == 2 && r.Code != 0 && r.Code/100 != 2) {
		return r
	}
	return txn
}

// firstReply is the reply that says why nothing was accepted.
func firstReply(res smtp.Result, txn smtp.Reply) smtp.Reply {
	if txn.Code != 0 {
		return txn
	}
	for _, r := range res.Rcpts {
		if r.Code != 0 {
			return r
		}
	}
	return res.Data
}

// later makes name wait before its next try, twice as long as the last
// time, up to pickupMaxWait.
func (p *pickupPart) later(name string, now time.Time) {
	w := p.waits[name]
	w.wait = min(max(2*w.wait, pickupInterval), pickupMaxWait)
	w.next = now.Add(w.wait)
	p.waits[name] = w
}
