package dsn

import (
	"bytes"
	"strings"
	"testing"
)

// TestSendEnvelopeKeepsRequireTLS: RFC 8689 §5: a non-delivery report
// about a message sent with REQUIRETLS carries the original's header (or
// all of it, RET=FULL) and MUST itself be sent with REQUIRETLS unless it
// is redacted. SendEnvelope drops the flag, so the bounce of a
// REQUIRETLS message goes back over opportunistic (strippable) TLS with
// the very content the sender demanded be protected.
func TestSendEnvelopeKeepsRequireTLS(t *testing.T) {
	d := testDSN("FULL")
	d.Envelope.RequireTLS = true
	var b bytes.Buffer
	if err := d.Build(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "Subject:") {
		t.Fatalf("report does not carry the original's header:\n%s", b.String())
	}
	if env := d.SendEnvelope(b.Bytes()); !env.RequireTLS {
		t.Errorf("SendEnvelope(...).RequireTLS = false for a report about a REQUIRETLS message carrying its content")
	}
}
