package delivery

// This file is the DKIM signing step of a job: after the predelivery
// hook's changes are applied, before the transport, over the very bytes
// the transport sends.

import (
	"io"
	"strings"

	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/sdk"
)

// SetDKIM replaces the signing keys (a reload of the dkim blocks); nil
// signs nothing. Jobs that have already signed keep their signature.
func (e *Engine) SetDKIM(keys *dkim.Keys) { e.dkim.Store(keys) }

// DKIM is the signing keys in use now (nil when none), for a part that
// signs with them too (the ARC sealer: Keys.Lookup of arc_seal's domain).
func (e *Engine) DKIM() *dkim.Keys { return e.dkim.Load() }

// leavesGateway reports whether mail through transport goes on to another
// system: smtp and plugin transports (a relay's HTTP API, a webhook), not
// lmtp and maildir, which deliver into the mailboxes of this site.
func leavesGateway(transport string) bool {
	return transport != "lmtp" && transport != "maildir"
}

// sign puts a DKIM-Signature on top of a's content (dkim.Keys.Sign) when
// the message is ours to sign: given by a relay client or an
// authenticated one (Envelope.Submitted) or a DSN of ours, leaving the
// gateway (leavesGateway), with a From: domain that has a dkim block.
// The field goes above everything, our Received included (which it does
// not sign). It reports whether a goes on to its transport: a message
// that cannot be signed is deferred (451 4.3.0), not sent unsigned for
// the receiver's DMARC check to fail.
func (e *Engine) sign(a *jobAttempt) bool {
	keys := e.dkim.Load()
	if keys.Len() == 0 || !a.env.Submitted || !leavesGateway(a.route.Transport) || len(a.env.Recipients) == 0 {
		return true
	}
	body, err := a.content.open()
	var (
		field string
		d     *dkim.Domain
	)
	if err == nil {
		field, d, err = keys.Sign(body)
		body.Close()
	}
	if err != nil {
		e.log.Error("delivery: cannot sign the message (DKIM); deferring", "id", a.r.id, "domain", a.domain, "err", err)
		a.end(rcptOutcome{class: Temporary, reply: "451 4.3.0 cannot sign the message (DKIM)", status: sdk.EnhancedCode{4, 3, 0}})
		return false
	}
	if d == nil {
		return true
	}
	e.log.Debug("delivery: DKIM signed", "id", a.r.id, "domain", a.domain, "d", d.Name, "s", d.Selector, "a", d.Key.SigningAlgorithm())
	a.content = a.content.withHeader(field)
	return true
}

// withHeader is c with field (a whole header field, CRLF included) on top.
func (c jobContent) withHeader(field string) jobContent {
	open := c.open
	c.size += int64(len(field))
	c.open = func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.MultiReader(strings.NewReader(field), rc), rc}, nil
	}
	return c
}
