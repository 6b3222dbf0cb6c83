package delivery

// This file queues delivery status notifications about queued messages,
// through the same spool, and decides where a bounce of a bounce goes.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// queueDSN queues one DSN about message m with reports, to m's sender.
//
// A DSN never goes to the null sender. When m has the null sender (m is
// itself a DSN, or a message like one) only its failures are reported, and
// to the postmaster (Delivery.Postmaster) as a double bounce; without a
// postmaster they are logged at error and dropped. A failure of a message
// to the postmaster with the null sender — a double bounce that failed —
// is only logged, which is what ends every bounce loop.
//
// The DSN is queued with the null sender and the recipient's NOTIFY=NEVER,
// and the engine is kicked. Building or committing it can fail; then
// nothing is queued.
func (e *Engine) queueDSN(ctx context.Context, m *queue.Message, reports []RecipientReport, now time.Time) error {
	to := m.Envelope.Sender
	if to.IsNull() {
		var failed []RecipientReport
		for _, rep := range reports {
			if rep.Action != ActionFailed {
				continue
			}
			if !e.postmaster.IsNull() && sameAddress(rep.Recipient.Address, e.postmaster) {
				e.log.Error("delivery: a double bounce to the postmaster failed; dropped", "id", m.ID,
					"rcpt", rep.Recipient.Address.String(), "reply", rep.Diagnostic)
				continue
			}
			failed = append(failed, rep)
		}
		if len(failed) == 0 {
			return nil
		}
		if e.postmaster.IsNull() {
			for _, rep := range failed {
				e.log.Error("delivery: a message with the null sender failed and no postmaster is set; bounce dropped",
					"id", m.ID, "rcpt", rep.Recipient.Address.String(), "reply", rep.Diagnostic)
			}
			return nil
		}
		to, reports = e.postmaster, failed
	}

	var orig io.Reader
	if body, err := e.spool.Body(m.ID); err != nil {
		e.log.Warn("delivery: DSN without the original message", "id", m.ID, "err", err)
	} else {
		defer body.Close()
		orig = body
	}
	dsn := &DSN{
		ReportingMTA: e.opt.Hostname,
		To:           to,
		Envelope:     &m.Envelope,
		QueueID:      m.ID,
		Reports:      reports,
		Original:     orig,
		Now:          now,
	}
	var buf bytes.Buffer
	if err := dsn.Build(&buf); err != nil {
		return fmt.Errorf("delivery: DSN about %s: %w", m.ID, err)
	}
	raw := buf.Bytes()

	env := &envelope.Envelope{
		Recipients: []envelope.Recipient{{Address: to, Notify: envelope.NotifyNever}},
		Received:   now,
	}
	if !isASCII(string(raw)) {
		env.Body = envelope.Body8BitMIME
		if head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n")); bytes.Contains(head, []byte("\r\nContent-Transfer-Encoding: binary\r\n")) {
			env.Body = envelope.BodyBinaryMIME
		}
		env.SMTPUTF8 = m.Envelope.SMTPUTF8 || !isASCII(to.String())
	}
	d, err := e.spool.Create(ctx)
	if err != nil {
		return fmt.Errorf("delivery: DSN about %s: %w", m.ID, err)
	}
	if _, err := d.Write(raw); err != nil {
		d.Abort()
		return fmt.Errorf("delivery: DSN about %s: %w", m.ID, err)
	}
	if err := d.Commit(ctx, env, nil); err != nil {
		d.Abort()
		return fmt.Errorf("delivery: DSN about %s: %w", m.ID, err)
	}

	action := ActionDelivered
	for _, rep := range reports {
		switch {
		case rep.Action == ActionFailed:
			action = ActionFailed
		case rep.Action == ActionDelayed && action != ActionFailed:
			action = ActionDelayed
		}
	}
	e.dsns.Add(1)
	if e.opt.Observer != nil {
		e.opt.Observer.Bounced(action)
	}
	e.log.Info("delivery: DSN queued", "id", d.ID(), "about", m.ID, "to", to.String(), "action", action, "rcpts", len(reports))
	e.Kick()
	return nil
}
