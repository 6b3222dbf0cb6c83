package smtp

// This file applies what data-stage hooks ask for (sdk.Effects) to the
// transaction before its commit.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

// errRewriteTooBig is a rewritten message over max_message_size.
var errRewriteTooBig = errors.New("smtp: rewritten message exceeds the maximum message size")

// errBadEffect is a hook effect the server cannot apply (a bad address).
var errBadEffect = errors.New("smtp: bad hook effect")

// rewriteContent writes the content a data hook asked for into a new draft:
// eff.Body when set (bare line endings made CRLF, a last line break added),
// else the received content, without the fields named in
// eff.RemoveHeaders. The content streams from the old draft to the new one;
// the old draft is aborted once the new one holds it all. It returns the new
// draft and its size.
func (s *session) rewriteContent(ctx context.Context, old Draft, eff *sdk.Effects) (Draft, int64, error) {
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

// envelopeEffects returns the envelope sender and recipients a data hook
// asks for: Sender (the envelope sender becomes it) and Recipients (the
// recipient list becomes them: a list expanded late), else env's own. An
// address that is not valid is an error. A recipient that was already one
// keeps its DSN parameters; duplicates are left out.
func envelopeEffects(env *envelope.Envelope, eff *sdk.Effects) (envelope.Address, []envelope.Recipient, error) {
	sender := env.Sender
	if a := eff.Sender; a != nil {
		var err error
		if sender, err = hookAddress(*a, true, env.SMTPUTF8); err != nil {
			return envelope.Address{}, nil, err
		}
	}
	if len(eff.Recipients) == 0 {
		return sender, env.Recipients, nil
	}
	rcpts := make([]envelope.Recipient, 0, len(eff.Recipients))
	for _, a := range eff.Recipients {
		addr, err := hookAddress(a, false, env.SMTPUTF8)
		if err != nil {
			return envelope.Address{}, nil, err
		}
		same := func(r envelope.Recipient) bool { return sameAddress(r.Address, addr) }
		if slices.ContainsFunc(rcpts, same) {
			continue
		}
		r := envelope.Recipient{Address: addr}
		if i := slices.IndexFunc(env.Recipients, same); i >= 0 {
			r.Notify, r.ORCPT = env.Recipients[i].Notify, env.Recipients[i].ORCPT
		}
		rcpts = append(rcpts, r)
	}
	return sender, rcpts, nil
}

// hookAddress checks an address a hook gave as a path would be checked on
// the wire: the null path only for a sender, UTF-8 only with SMTPUTF8.
func hookAddress(a sdk.Address, sender, utf8 bool) (envelope.Address, error) {
	path := "<" + a.String() + ">"
	addr, rest, err := envelope.ParsePath(path, sender, utf8)
	if err == nil && rest != "" {
		err = errors.New("text after the path")
	}
	if err != nil {
		return envelope.Address{}, fmt.Errorf("%w: address %q: %w", errBadEffect, path, err)
	}
	return addr, nil
}

// sameAddress compares local parts exactly and domains without case.
func sameAddress(a, b envelope.Address) bool {
	return a.Local == b.Local && a.DomainFold() == b.DomainFold()
}
