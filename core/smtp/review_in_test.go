package smtp_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// TestTLSRequiredRemovedByDataHook: a data hook that removes the
// TLS-Required field (an operator who does not let senders relax the
// recipients' MTA-STS and DANE policies) must also undo what the field
// asked: the spooled message no longer says "TLS-Required: No", yet its
// envelope still has TLSOptional, and delivery ignores MTA-STS and DANE
// for it.
func TestTLSRequiredRemovedByDataHook(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			if req.Stage == sdk.StageData {
				return sdk.Decision{}, sdk.Effects{RemoveHeaders: []string{"TLS-Required"}}
			}
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	c := smtptest.Dial(t, addr)
	c.Run(hello + `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
	`)
	c.Send([]byte("Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n.\r\n"))
	c.Run(`
		S: 250 2.0.0 Ok: queued as M0002
	`)
	m := wantMessages(t, spool, 1)[0]
	if strings.Contains(strings.ToLower(string(m.Data())), "tls-required") {
		t.Fatalf("spooled message still has the field:\n%s", m.Data())
	}
	if m.Envelope.TLSOptional {
		t.Errorf("TLSOptional = true for a message whose TLS-Required field the data hook removed")
	}
}

// TestImplicitTLSTurnedAwayOverTLS: a client over a connection limit on
// an implicit-TLS listener gets its "421 Too many connections" in clear
// text, which its TLS stack reads as a bad record ("first record does
// not look like a TLS handshake"): the reply it must retry on is never
// seen. On such a listener the refusal belongs after the handshake (as
// Postfix's smtpd in wrapper mode does), or the connection should just be
// closed.
func TestImplicitTLSTurnedAwayOverTLS(t *testing.T) {
	tlsOpts := implicitTLS(t)
	addr, _, _ := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Listener.MaxConnectionsPerIP = 1
	})
	first, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(first).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("first greeting %q, %v", line, err)
	}
	second, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("second connection: TLS handshake failed (%v); want the 421 over TLS", err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(second).ReadString('\n'); !strings.HasPrefix(line, "421 ") {
		t.Errorf("second connection read %q, %v; want 421", line, err)
	}
}
