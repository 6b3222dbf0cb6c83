package smtp_test

import (
	"testing"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// TestRequireTLS: REQUIRETLS is offered and taken only under TLS (RFC
// 8689 §2); outside it MAIL ... REQUIRETLS gets 530 5.7.10. The envelope
// records it, the mail hook sees it, and it makes TLS-Required: No
// meaningless (§4.1).
func TestRequireTLS(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	var sawAtMail []bool
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.TLS = serverTLS
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			if req.Stage == sdk.StageMail {
				sawAtMail = append(sawAtMail, req.Envelope.RequireTLS)
			}
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	c := smtptest.Dial(t, addr)
	c.TLS = clientTLS
	c.Run(greeting + "C: EHLO client.test\n" + ehloTLS + `
		C: MAIL FROM:<a@example.net> REQUIRETLS
		S: 530 5.7.10 REQUIRETLS needs TLS: issue STARTTLS first
		C: HELO client.test
		S: 250 mx.test
		C: MAIL FROM:<a@example.net> REQUIRETLS
		S: 555 5.5.4 ESMTP parameters need EHLO
		C: STARTTLS
		S: 220 2.0.0 Ready to start TLS
		TLS
		C: EHLO client.test
		` + ehloTLSDone + `
		C: MAIL FROM:<a@example.net> REQUIRETLS=1
		S: 501 5.5.4 Invalid parameter value
		C: MAIL FROM:<a@example.net> REQUIRETLS
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: TLS-Required: No
		C:
		C: REQUIRETLS wins
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0002
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	msgs := wantMessages(t, spool, 2)
	if e := msgs[0].Envelope; !e.RequireTLS || e.TLSOptional || !e.TLS {
		t.Errorf("first message RequireTLS %v TLSOptional %v TLS %v, want true false true", e.RequireTLS, e.TLSOptional, e.TLS)
	}
	if e := msgs[1].Envelope; e.RequireTLS || e.TLSOptional {
		t.Errorf("second message RequireTLS %v TLSOptional %v, want false false", e.RequireTLS, e.TLSOptional)
	}
	if want := []bool{true, false}; len(sawAtMail) != 2 || sawAtMail[0] != want[0] || sawAtMail[1] != want[1] {
		t.Errorf("mail hook saw RequireTLS %v, want %v", sawAtMail, want)
	}
}

// TestTLSRequiredNo: a "TLS-Required: No" field in the header section (any
// case, RFC 8689 §5) sets Envelope.TLSOptional; another value, or the
// words in the body, do not.
func TestTLSRequiredNo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		want    bool
	}{
		{"no", "Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n", true},
		{"any case", "tls-required:   nO  \r\nSubject: x\r\n\r\nbody\r\n", true},
		{"folded", "TLS-Required:\r\n No\r\n\r\nbody\r\n", true},
		{"yes", "TLS-Required: Yes\r\n\r\nbody\r\n", false},
		{"no, with more", "TLS-Required: No thanks\r\n\r\nbody\r\n", false},
		{"in the body", "Subject: x\r\n\r\nTLS-Required: No\r\n", false},
		{"absent", "Subject: x\r\n\r\nbody\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool, _ := start(t, nil)
			c := smtptest.Dial(t, addr)
			c.Run(hello + `
				C: MAIL FROM:<a@example.net>
				S: 250 2.1.0 Ok
				C: RCPT TO:<b@example.org>
				S: 250 2.1.5 Ok
				C: DATA
				S: 354 End data with <CR><LF>.<CR><LF>
			`)
			c.Send([]byte(tc.content + ".\r\n"))
			c.Run(`
				S: 250 2.0.0 Ok: queued as M0001
			`)
			if got := wantMessages(t, spool, 1)[0].Envelope.TLSOptional; got != tc.want {
				t.Errorf("TLSOptional = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTLSRequiredAfterDataHook: Envelope.TLSOptional follows the message
// as it is spooled, not as the client sent it. A data hook that removes
// the field (an operator who does not let senders relax the recipients'
// MTA-STS and DANE policies) or replaces the body undoes what the field
// asked; one that adds the field asks it. (TLSOptional was decided before
// the hook and kept: the spooled message no longer said "TLS-Required:
// No", and delivery still ignored MTA-STS and DANE for it.)
func TestTLSRequiredAfterDataHook(t *testing.T) {
	const withField = "Subject: x\r\nTLS-Required: No\r\n\r\nbody\r\n"
	for _, tc := range []struct {
		name    string
		content string
		eff     sdk.Effects
		id      string // a rewrite makes a new draft
		want    bool
	}{
		{"field removed", withField, sdk.Effects{RemoveHeaders: []string{"tls-required"}}, "M0002", false},
		{"body replaced", withField, sdk.Effects{Body: []byte("Subject: y\r\n\r\nnew\r\n")}, "M0002", false},
		{"body replaced, field kept", withField, sdk.Effects{Body: []byte("TLS-Required: No\r\n\r\nnew\r\n")}, "M0002", true},
		{"other field removed", withField, sdk.Effects{RemoveHeaders: []string{"Subject"}}, "M0002", true},
		{"field added", "Subject: x\r\n\r\nbody\r\n", sdk.Effects{AddHeaders: []sdk.HeaderField{{Name: "TLS-Required", Value: "No"}}}, "M0001", true},
		{"unchanged", withField, sdk.Effects{}, "M0001", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool, _ := start(t, func(o *smtp.Options) {
				o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
					if req.Stage == sdk.StageData {
						return sdk.Decision{}, tc.eff
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
			c.Send([]byte(tc.content + ".\r\n"))
			c.Run(`
				S: 250 2.0.0 Ok: queued as ` + tc.id + `
			`)
			m := wantMessages(t, spool, 1)[0]
			if got := m.Envelope.TLSOptional; got != tc.want {
				t.Errorf("TLSOptional = %v, want %v; spooled:\n%s", got, tc.want, m.Data())
			}
		})
	}
}
