package delivery

// This file is the ARC sealing step of a job (RFC 8617): mail received
// from outside that leaves again (an alias, a list, a route to another
// system) gets our ARC set, so that a receiver that trusts us can see the
// SPF, DKIM and DMARC results that forwarding breaks.

import (
	"bytes"
	"errors"
	"io"

	"github.com/mailgate/gateway/core/arc"
)

// ARCSealing is how the engine seals: the sealer (the arc_seal dkim
// block's domain, selector and RSA key) and the authserv-id of the
// Authentication-Results the gateway wrote at data, which the seal
// carries on as its ARC-Authentication-Results.
type ARCSealing struct {
	Sealer     arc.Sealer
	AuthservID string
}

// SetARC replaces the ARC sealing (a reload); nil seals nothing.
func (e *Engine) SetARC(s *ARCSealing) { e.arc.Store(s) }

// seal prepends our ARC set to a's content when the message came from
// outside (not Envelope.Submitted: that mail is DKIM signed instead), is
// leaving the gateway, and carries our Authentication-Results (it was
// checked at data; arc.FromAuthResults gives the chain's cv). A seal
// that cannot be made is logged and the message goes on unsealed, as it
// would without ARC: sealing only adds evidence for the receiver. It
// reports whether a goes on (always).
func (e *Engine) seal(a *jobAttempt) bool {
	s := e.arc.Load()
	if s == nil || a.env.Submitted || !leavesGateway(a.route.Transport) || len(a.env.Recipients) == 0 {
		return true
	}
	msg, err := a.content.bytes()
	if err != nil {
		e.log.Warn("delivery: cannot read the message to seal it (ARC); sending it unsealed", "id", a.r.id, "err", err)
		return true
	}
	payload, cv, ok := arc.FromAuthResults(msg, s.AuthservID)
	if !ok {
		return true
	}
	set, err := s.Sealer.Seal(msg, cv, payload)
	switch {
	case errors.Is(err, arc.ErrChainEnded):
		return true
	case err != nil:
		e.log.Warn("delivery: cannot seal the message (ARC); sending it unsealed", "id", a.r.id, "domain", a.domain, "err", err)
		return true
	}
	e.log.Debug("delivery: ARC sealed", "id", a.r.id, "domain", a.domain, "d", s.Sealer.Domain, "cv", cv)
	a.content = a.content.withHeader(string(set))
	return true
}

// bytes reads the whole content.
func (c jobContent) bytes() ([]byte, error) {
	rc, err := c.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var b bytes.Buffer
	b.Grow(int(c.size))
	_, err = io.Copy(&b, rc)
	return b.Bytes(), err
}
