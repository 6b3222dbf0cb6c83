package smtp_test

// Transcripts of what an attacker tries at the edge (issue 9): each case
// failed before its fix.

import (
	"testing"

	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// A Kelvin sign (U+212A) lower-cases to "k" under Unicode rules: the
// domain "\u212Aiosk.test" must not count as the local domain kiosk.test.
func TestLocalDomainFoldsASCIIOnly(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) { o.LocalDomains = []string{"kiosk.test"} })
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net> SMTPUTF8
		S: 250 2.1.0 Ok
		C: RCPT TO:<user@`+"\u212A"+`iosk.test>
		S: 550 5.7.1 Relay access denied
		C: RCPT TO:<user@`+"\u212A"+`IOSK.TEST>
		S: 550 5.7.1 Relay access denied
		C: RCPT TO:<user@KIOSK.test>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	rcpts := wantMessages(t, spool, 1)[0].Envelope.Recipients
	if len(rcpts) != 1 || rcpts[0].Address.Domain != "KIOSK.test" {
		t.Errorf("recipients %v, want only user@KIOSK.test", rcpts)
	}
}
