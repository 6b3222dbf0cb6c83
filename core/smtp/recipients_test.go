package smtp_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

func rcpt(local, domain string, notify envelope.Notify, orcpt string) envelope.Recipient {
	return envelope.Recipient{Address: envelope.Address{Local: local, Domain: domain}, Notify: notify, ORCPT: orcpt}
}

// oneMessage is the end of a transaction after its RCPT commands.
const oneMessage = `
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: x
		C:
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
`

// TestDuplicateRecipients: the same mailbox given twice, or in another
// case, is one recipient of the queued message, with the DSN parameters
// of its first RCPT; every RCPT still gets its 250.
func TestDuplicateRecipients(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<alice@example.org> NOTIFY=SUCCESS
		S: 250 2.1.5 Ok
		C: RCPT TO:<alice@example.org>
		S: 250 2.1.5 Ok
		C: RCPT TO:<Alice@Example.ORG> NOTIFY=NEVER
		S: 250 2.1.5 Ok
		C: RCPT TO:<bob@example.org>
		S: 250 2.1.5 Ok
`+oneMessage)
	m := wantMessages(t, spool, 1)[0]
	want := []envelope.Recipient{
		rcpt("alice", "example.org", envelope.NotifySuccess, ""),
		rcpt("bob", "example.org", 0, ""),
	}
	if diff := cmp.Diff(want, m.Envelope.Recipients); diff != "" {
		t.Errorf("queued recipients (-want +got):\n%s", diff)
	}
}

// TestDuplicateRecipientsFromRcptHooks: what rcpt hooks expand a recipient
// into is de-duplicated too: within one expansion, against the recipients
// already accepted, and across handlers (an alias and a virtual entry to
// the same user). An expansion takes the DSN parameters of its RCPT; a
// mailbox already there keeps its own.
func TestDuplicateRecipientsFromRcptHooks(t *testing.T) {
	aliases := hooktestFunc("aliases", func(req *hook.Request) sdk.Effects {
		if req.Stage == sdk.StageRcpt && req.Rcpt.Address.Local == "info" {
			return sdk.Effects{Recipients: []sdk.Address{
				{Local: "alice", Domain: "example.org"},
				{Local: "bob", Domain: "example.org"},
				{Local: "ALICE", Domain: "example.org"},
			}}
		}
		return sdk.Effects{}
	})
	virtual := hooktestFunc("virtual", func(req *hook.Request) sdk.Effects {
		if req.Stage == sdk.StageRcpt && req.Rcpt.Address.Local == "sales" {
			return sdk.Effects{Recipients: []sdk.Address{
				{Local: "alice", Domain: "EXAMPLE.org"},
				{Local: "carol", Domain: "example.org"},
			}}
		}
		return sdk.Effects{}
	})
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: aliases}, hook.Entry{Handler: virtual})
	})
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<bob@example.org> NOTIFY=NEVER
		S: 250 2.1.5 Ok
		C: RCPT TO:<info@example.org> NOTIFY=SUCCESS ORCPT=rfc822;info@example.org
		S: 250 2.1.5 Ok
		C: RCPT TO:<sales@example.org> NOTIFY=FAILURE
		S: 250 2.1.5 Ok
		C: RCPT TO:<Carol@example.org>
		S: 250 2.1.5 Ok
`+oneMessage)
	m := wantMessages(t, spool, 1)[0]
	want := []envelope.Recipient{
		rcpt("bob", "example.org", envelope.NotifyNever, ""),
		rcpt("alice", "example.org", envelope.NotifySuccess, "rfc822;info@example.org"),
		rcpt("carol", "example.org", envelope.NotifyFailure, ""),
	}
	if diff := cmp.Diff(want, m.Envelope.Recipients); diff != "" {
		t.Errorf("queued recipients (-want +got):\n%s", diff)
	}
}

// TestRcptHookBadRecipient: a rcpt hook's recipients are checked as RCPT
// TO would check them; one that would not pass is the handler's failure
// (on_error, defer by default), never a recipient queued.
func TestRcptHookBadRecipient(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    sdk.Address
	}{
		{"no domain", sdk.Address{Local: "x"}},
		{"null", sdk.Address{}},
		{"space", sdk.Address{Local: "a b", Domain: "example.org"}},
		{"UTF-8 without SMTPUTF8", sdk.Address{Local: "jörg", Domain: "example.org"}},
		{"source route", sdk.Address{Local: "@relay.example:x", Domain: "example.org"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool, _ := start(t, func(o *smtp.Options) {
				o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
					if req.Stage == sdk.StageRcpt && req.Rcpt.Address.Local == "alias" {
						return sdk.Decision{}, sdk.Effects{Recipients: []sdk.Address{tc.a}}
					}
					return sdk.Decision{}, sdk.Effects{}
				})
			})
			smtptest.Run(t, addr, hello+`
				C: MAIL FROM:<a@example.net>
				S: 250 2.1.0 Ok
				C: RCPT TO:<alias@example.org>
				S: 451 4.3.0 Temporary local problem, please try again later
				C: RCPT TO:<b@example.org>
				S: 250 2.1.5 Ok
`+oneMessage)
			m := wantMessages(t, spool, 1)[0]
			if diff := cmp.Diff([]envelope.Recipient{rcpt("b", "example.org", 0, "")}, m.Envelope.Recipients); diff != "" {
				t.Errorf("queued recipients (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHELPHook: a command hook that accepts HELP with reply lines is the
// answer, as for VRFY and EXPN: a 214 reply of those lines.
func TestHELPHook(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			if req.Stage == sdk.StageCommand && req.Command == "HELP" && req.Arg == "" {
				return sdk.AcceptDecision(), sdk.Effects{ReplyLines: []string{
					"Commands: EHLO MAIL RCPT DATA",
					"Write to postmaster@example.org\x00",
				}}
			}
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	smtptest.Run(t, addr, hello+`
		C: HELP
		S: 214-2.0.0 Commands: EHLO MAIL RCPT DATA
		S: 214 2.0.0 Write to postmaster@example.org?
		C: HELP MAIL
		S: 214 2.0.0 See RFC 5321
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
}

// noteReader records the notes each request carried at the stages it sees.
type noteReader struct {
	name string
	seen chan string
}

func (n noteReader) Name() string { return n.name }

func (n noteReader) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	s := string(req.Stage)
	switch req.Stage {
	case sdk.StageMail, sdk.StageRcpt, sdk.StageData, sdk.StageDisconnect:
	case sdk.StageCommand:
		if req.Command != "RSET" {
			return sdk.Decision{}, sdk.Effects{}, nil
		}
		s += ":" + req.Command
	default:
		return sdk.Decision{}, sdk.Effects{}, nil
	}
	for _, k := range slices.Sorted(maps.Keys(req.Notes)) {
		s += " " + k + "=" + req.Notes[k]
	}
	n.seen <- s
	return sdk.Decision{}, sdk.Effects{}, nil
}

// TestNotes: notes a handler writes reach the later handlers of the same
// dispatch and of the later stages of the transaction, and end with it
// (RSET, the end of DATA); notes written outside a transaction (connect)
// last for the connection. A key is in the namespace of the handler that
// wrote it ("w/…"), whatever the handler wrote.
func TestNotes(t *testing.T) {
	writer := hooktestFunc("w", func(req *hook.Request) sdk.Effects {
		switch req.Stage {
		case sdk.StageConnect:
			return sdk.Effects{Notes: map[string]string{"conn": "1"}}
		case sdk.StageMail:
			return sdk.Effects{Notes: map[string]string{"w/mail": req.Envelope.Sender.String()}}
		case sdk.StageRcpt:
			return sdk.Effects{Notes: map[string]string{"rcpt." + req.Rcpt.Address.Local: "1", "other/forged": "x"}}
		}
		return sdk.Effects{}
	})
	reader := noteReader{name: "r", seen: make(chan string, 100)}
	addr, _, srv := start(t, func(o *smtp.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: writer}, hook.Entry{Handler: reader})
	})
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: MAIL FROM:<c@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<d@example.org>
		S: 250 2.1.5 Ok
		C: RSET
		S: 250 2.0.0 Ok
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx) // the disconnect stage has run
	close(reader.seen)
	var got []string
	for s := range reader.seen {
		got = append(got, s)
	}
	want := []string{
		"mail w/conn=1 w/mail=a@example.net",
		"rcpt w/conn=1 w/mail=a@example.net w/other/forged=x w/rcpt.b=1",
		"data w/conn=1 w/mail=a@example.net w/other/forged=x w/rcpt.b=1",
		"mail w/conn=1 w/mail=c@example.net",
		"rcpt w/conn=1 w/mail=c@example.net w/other/forged=x w/rcpt.d=1",
		"command:RSET w/conn=1 w/mail=c@example.net w/other/forged=x w/rcpt.d=1",
		"disconnect w/conn=1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("notes seen by the later handler (-want +got):\n%s", diff)
	}
}
