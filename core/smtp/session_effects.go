package smtp

// This file applies what hooks ask for (hook.Effects, checked by the chain)
// to the transaction: recipients at rcpt, and at data the content, sender
// and recipients before the commit.

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/message"
)

// errRewriteTooBig is a rewritten message over max_message_size.
var errRewriteTooBig = errors.New("smtp: rewritten message exceeds the maximum message size")

// rewriteContent writes the content a data hook asked for into a new draft:
// eff.Body when set (bare line endings made CRLF, a last line break added),
// else the received content, without the fields named in
// eff.RemoveHeaders. The content streams from the old draft to the new one;
// the old draft is aborted once the new one holds it all. It returns the new
// draft and its size.
func (s *session) rewriteContent(ctx context.Context, old Draft, eff *hook.Effects) (Draft, int64, error) {
	var src io.Reader
	if eff.Body != nil {
		src = message.Replacement(eff.Body)
	} else {
		rc, err := old.Open()
		if err != nil {
			return nil, 0, fmt.Errorf("smtp: reading the received message: %w", err)
		}
		defer rc.Close()
		src = rc
	}
	nd, err := s.srv.opt.Spool.Create(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("smtp: spool create: %w", err)
	}
	w := &sizeWriter{w: nd, max: s.lim.maxMessage}
	if err := message.Rewrite(w, src, nil, eff.RemoveHeaders); err != nil {
		nd.Abort()
		return nil, 0, err
	}
	if err := old.Abort(); err != nil {
		s.log.Warn("smtp: aborting draft", "id", old.ID(), "err", err)
	}
	return nd, w.n, nil
}

// sizeWriter counts what goes to w and fails once more than max bytes
// (max > 0) went.
type sizeWriter struct {
	w   io.Writer
	n   int64
	max int64
}

func (c *sizeWriter) Write(p []byte) (int, error) {
	if c.max > 0 && c.n+int64(len(p)) > c.max {
		return 0, errRewriteTooBig
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// addRecipients adds the recipient of a RCPT command to the transaction,
// or the addresses a rcpt hook made of it (an alias, a list), each with the
// RCPT's DSN parameters.
func (tx *txn) addRecipients(rcpt envelope.Recipient, expanded []envelope.Address) {
	if expanded == nil {
		tx.addRecipient(rcpt)
		return
	}
	for _, a := range expanded {
		tx.addRecipient(envelope.Recipient{Address: a, Notify: rcpt.Notify, ORCPT: rcpt.ORCPT})
	}
}

// addRecipient adds r unless the transaction has its mailbox already
// (envelope.Address.Mailbox: the whole address without case, as Postfix's
// duplicate filter compares): then the recipient there first stays, with
// its DSN parameters.
func (tx *txn) addRecipient(r envelope.Recipient) {
	rs := tx.env.Recipients
	if len(rs) > 0 { // one recipient needs no look-up table
		if tx.mailboxes == nil {
			tx.mailboxes = map[string]bool{rs[0].Address.Mailbox(): true}
		}
		k := r.Address.Mailbox()
		if tx.mailboxes[k] {
			return
		}
		tx.mailboxes[k] = true
	}
	tx.env.Recipients = append(rs, r)
}

// replaceRecipients is the recipient list a data hook gave (each mailbox
// once already), each address keeping the DSN parameters it had as a
// recipient of the transaction.
func replaceRecipients(old []envelope.Recipient, addrs []envelope.Address) []envelope.Recipient {
	dsn := make(map[string]envelope.Recipient, len(old))
	for _, r := range old {
		dsn[r.Address.Mailbox()] = r
	}
	out := make([]envelope.Recipient, len(addrs))
	for i, a := range addrs {
		out[i] = envelope.Recipient{Address: a}
		if r, ok := dsn[a.Mailbox()]; ok {
			out[i].Notify, out[i].ORCPT = r.Notify, r.ORCPT
		}
	}
	return out
}
