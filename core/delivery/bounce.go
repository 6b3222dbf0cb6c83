package delivery

// This file queues delivery status notifications about queued messages,
// through the same spool, and decides where a bounce of a bounce goes.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// queueDSN queues one DSN about message m with reports, to m's sender (or
// the postmaster: see dsnRecipient), with the null sender and the
// recipient's NOTIFY=NEVER, and kicks the engine. Building or committing
// it can fail; then nothing is queued.
func (e *Engine) queueDSN(ctx context.Context, m *queue.Message, reports []dsn.RecipientReport, now time.Time) error {
	to, reports := e.dsnRecipient(m, reports)
	if len(reports) == 0 {
		return nil
	}
	var orig io.Reader
	if body, err := e.spool.Body(m.ID); err != nil {
		e.log.Warn("delivery: DSN without the original message", "id", m.ID, "err", err)
	} else {
		defer body.Close()
		orig = body
	}
	rep := &dsn.Report{
		ReportingMTA: e.opt.Hostname,
		To:           to,
		Envelope:     &m.Envelope,
		QueueID:      m.ID,
		Reports:      reports,
		Original:     orig,
		Now:          now,
	}
	return e.QueueDSN(ctx, rep, m.ID)
}

// QueueDSN builds rep and queues it, as the engine queues its own DSNs:
// from the null sender, its recipient with NOTIFY=NEVER, counted, logged
// (about names the message it reports on) and kicked. The pickup calls it
// for the mail of local programs that the server refused, which never
// reached the queue. An empty rep.ReportingMTA is the engine's hostname.
// Building or committing it can fail; then nothing is queued.
func (e *Engine) QueueDSN(ctx context.Context, rep *dsn.Report, about string) error {
	if rep.ReportingMTA == "" {
		rep.ReportingMTA = e.opt.Hostname
	}
	var buf bytes.Buffer
	if err := rep.Build(&buf); err != nil {
		return fmt.Errorf("delivery: DSN about %s: %w", about, err)
	}
	raw := buf.Bytes()
	d, err := e.spool.Create(ctx)
	if err != nil {
		return fmt.Errorf("delivery: DSN about %s: %w", about, err)
	}
	if _, err := d.Write(raw); err != nil {
		d.Abort()
		return fmt.Errorf("delivery: DSN about %s: %w", about, err)
	}
	env := rep.SendEnvelope(raw)
	env.Submitted = true // ours: signed when the postmaster's domain has a dkim block
	if err := d.Commit(ctx, env, nil); err != nil {
		d.Abort()
		return fmt.Errorf("delivery: DSN about %s: %w", about, err)
	}

	action := reportAction(rep.Reports)
	e.dsns.Add(1)
	if e.opt.Observer != nil {
		e.opt.Observer.Bounced(action)
	}
	e.log.Info("delivery: DSN queued", "id", d.ID(), "about", about, "to", env.Recipients[0].Address.String(),
		"action", action, "rcpts", len(rep.Reports))
	e.Kick()
	return nil
}

// reportAction names a DSN for metrics and logs by its gravest action:
// failed, then delayed, then relayed, else delivered (expanded too).
func reportAction(reports []dsn.RecipientReport) dsn.Action {
	rank := map[dsn.Action]int{dsn.ActionFailed: 3, dsn.ActionDelayed: 2, dsn.ActionRelayed: 1}
	action := dsn.ActionDelivered
	for _, r := range reports {
		if rank[r.Action] > rank[action] {
			action = r.Action
		}
	}
	return action
}

// dsnRecipient returns whom a DSN about m goes to, and which of reports it
// holds (none: no DSN).
//
// A DSN never goes to the null sender. When m has the null sender (m is
// itself a DSN, or a message like one) only its failures are reported, and
// to the postmaster (Delivery.Postmaster) as a double bounce; without a
// postmaster they are logged at error and dropped. A failure of a message
// to the postmaster with the null sender — a double bounce that failed —
// is only logged, which is what ends every bounce loop.
func (e *Engine) dsnRecipient(m *queue.Message, reports []dsn.RecipientReport) (envelope.Address, []dsn.RecipientReport) {
	if !m.Envelope.Sender.IsNull() {
		return m.Envelope.Sender, reports
	}
	var failed []dsn.RecipientReport
	for _, r := range reports {
		if r.Action != dsn.ActionFailed {
			continue
		}
		if !e.postmaster.IsNull() && r.Recipient.Address.Mailbox() == e.postmaster.Mailbox() {
			e.log.Error("delivery: a double bounce to the postmaster failed; dropped", "id", m.ID,
				"rcpt", r.Recipient.Address.String(), "reply", r.Diagnostic)
			continue
		}
		failed = append(failed, r)
	}
	if len(failed) > 0 && e.postmaster.IsNull() {
		for _, r := range failed {
			e.log.Error("delivery: a message with the null sender failed and no postmaster is set; bounce dropped",
				"id", m.ID, "rcpt", r.Recipient.Address.String(), "reply", r.Diagnostic)
		}
		return envelope.Address{}, nil
	}
	return e.postmaster, failed
}
