package smtp

// This file runs the checks of inbound mail (core/mailauth) at the end of
// DATA, before the data hook.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

// checkAuth checks the message in tx.draft when the server has a checker
// and the client is from outside (neither in the relay networks nor
// authenticated): nil, true when it does not. An Authentication-Results
// with our authserv-id that came with the message is removed, from every
// client (RFC 8601 §5: only our checks write it; a relay client or a
// user is not checked, but may not claim they were) (the draft is
// rewritten, *size updated). false means the message was answered
// (refused, deferred, or a local error) and the transaction is over.
func (s *session) checkAuth(ctx context.Context, tx *txn, size *int64) (*mailauth.Verdict, bool) {
	c := s.srv.opt.MailAuth
	if c == nil {
		return nil, true
	}
	view := message.NewView(*size, tx.draft.Open)
	header, err := view.Header()
	if err != nil {
		return s.authLocalError(tx, err)
	}
	if s.authUser != "" || s.inRelayNetworks() {
		if err := s.stripOurs(ctx, tx, size, c, view, header); err != nil {
			return s.authLocalError(tx, err)
		}
		return nil, true
	}
	v, err := c.Check(ctx, &mailauth.Message{
		ClientIP: s.ip, HELO: s.helo, Sender: tx.env.Sender, Header: header, Open: tx.draft.Open,
	})
	if err != nil {
		return s.authLocalError(tx, err)
	}
	switch v.Action {
	case mailauth.Reject:
		s.log.Info("smtp: message refused by DMARC", "id", tx.draft.ID(), "from", tx.env.Sender.String(),
			"domain", v.Results.DMARC.Domain)
		s.refuse(R(550, enh571, v.Reply))
		return nil, false
	case mailauth.Defer:
		s.log.Info("smtp: DMARC check failed for now", "id", tx.draft.ID(), "domain", v.Results.DMARC.Domain)
		s.refuse(R(451, enh475, v.Reply))
		return nil, false
	}
	if err := s.stripOurs(ctx, tx, size, c, view, header); err != nil {
		return s.authLocalError(tx, err)
	}
	return v, true
}

// stripOurs rewrites tx's draft (stripForged) when header holds a field
// that carries our authserv-id, or when a line that is not a field ended
// the header section: readers downstream disagree on where such a header
// ends (one may take a forged field or a From: further down that the
// checks never saw), and the rewrite puts an empty line before that line,
// so that every reader sees the header that was judged.
func (s *session) stripOurs(ctx context.Context, tx *txn, size *int64, c *mailauth.Checker, view *message.View, header []sdk.HeaderField) error {
	clean, err := view.HeaderEndsClean() // parsed already: no second read
	if err != nil {
		return err
	}
	if clean && !slices.ContainsFunc(header, c.Ours) {
		return nil
	}
	return s.stripForged(ctx, tx, size, c)
}

// stripForged rewrites tx's draft without the Authentication-Results
// fields that carry our authserv-id (RFC 8601 §5).
func (s *session) stripForged(ctx context.Context, tx *txn, size *int64, c *mailauth.Checker) error {
	old := tx.draft
	rc, err := old.Open()
	if err != nil {
		return fmt.Errorf("smtp: reading the received message: %w", err)
	}
	defer rc.Close()
	nd, err := s.srv.opt.Spool.Create(ctx)
	if err != nil {
		return fmt.Errorf("smtp: spool create: %w", err)
	}
	w := &sizeWriter{w: nd}
	if err := message.RewriteFunc(w, rc, nil, func(f sdk.HeaderField) bool { return c.Ours(f) }); err != nil {
		nd.Abort()
		return err
	}
	if err := old.Abort(); err != nil {
		s.log.Warn("smtp: aborting draft", "id", old.ID(), "err", err)
	}
	s.log.Info("smtp: header rewritten: fields with our authserv-id removed, its end made plain", "id", old.ID(), "new_id", nd.ID())
	tx.draft, *size = nd, w.n
	return nil
}

// authLocalError answers a failure of ours while checking a message.
func (s *session) authLocalError(tx *txn, err error) (*mailauth.Verdict, bool) {
	if !errors.Is(err, context.Canceled) {
		s.log.Error("smtp: checking the message's authentication", "id", tx.draft.ID(), "err", err)
	}
	s.refuse(R(451, enh430, "Local error in processing"))
	return nil, false
}
