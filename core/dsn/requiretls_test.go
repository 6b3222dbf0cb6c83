package dsn

import (
	"github.com/mailgate/gateway/core/envelope"
	"strings"
	"testing"
)

// TestSendEnvelopeRequireTLS: RFC 8689 §5: every non-delivery
// message about a REQUIRETLS message must itself be sent with REQUIRETLS,
// unless it is redacted (no header or body of the original). Today the
// bounce quotes the original (here all of it) and SendEnvelope drops the
// demand, so the original's content leaves in clear text to the sender's
// MX.
func TestSendEnvelopeRequireTLS(t *testing.T) {
	d := testDSN(envelope.RetUnset)
	d.Envelope.RequireTLS = true
	_, raw := build(t, d)
	env := d.SendEnvelope(raw)
	quoted := strings.Contains(string(raw), "Subject: lunch") || strings.Contains(string(raw), "Shall we have lunch")
	if quoted && !env.RequireTLS {
		t.Errorf("the DSN about a REQUIRETLS message quotes the original but is queued without REQUIRETLS (env %+v)", env)
	}
}
