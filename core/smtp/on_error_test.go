package smtp_test

import (
	"testing"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestOnErrorWithLua runs a real Lua script that fails at each stage
// under each on_error policy: reject is a local processing error
// (554 5.3.0), told apart from a policy reject (550 5.7.1); defer is
// 451 4.3.0; continue answers as without the hook.
func TestOnErrorWithLua(t *testing.T) {
	const script = `
function on_mail(ctx) if ctx.txn.sender == "fail@example.net" then error("boom") end end
function on_rcpt(ctx) if ctx.txn.rcpt == "fail@example.org" then error("boom") end end
function on_data(ctx) error("boom") end
`
	mail := "C: MAIL FROM:<a@example.net>\nS: 250 2.1.0 Ok\n"
	data := "C: DATA\nS: 354 End data with <CR><LF>.<CR><LF>\nC: x\nC: .\n"
	for _, tc := range []struct {
		name    string
		onError hook.OnError
		script  string
		spool   int
	}{
		{"reject at mail", hook.OnErrorReject,
			"C: MAIL FROM:<fail@example.net>\nS: 554 5.3.0 Local processing error\n", 0},
		{"reject at rcpt", hook.OnErrorReject,
			mail + "C: RCPT TO:<fail@example.org>\nS: 554 5.3.0 Local processing error\n", 0},
		{"reject at data", hook.OnErrorReject,
			mail + "C: RCPT TO:<b@example.org>\nS: 250 2.1.5 Ok\n" + data + "S: 554 5.3.0 Local processing error\n", 0},
		{"defer at rcpt", hook.OnErrorDefer,
			mail + "C: RCPT TO:<fail@example.org>\nS: 451 4.3.0 Temporary local problem, please try again later\n", 0},
		{"continue at data", hook.OnErrorContinue,
			mail + "C: RCPT TO:<b@example.org>\nS: 250 2.1.5 Ok\n" + data + "S: 250 2.0.0 Ok: queued as M0001\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := lua.Load(lua.Options{Name: "broken", Source: script})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			addr, spool, _ := start(t, func(o *smtp.Options) {
				o.Hooks = hook.NewChain(nil, hook.Entry{Handler: s, OnError: tc.onError})
			})
			smtptest.Run(t, addr, hello+tc.script+"C: QUIT\nS: 221 2.0.0 Bye\nEOF")
			wantMessages(t, spool, tc.spool)
		})
	}
}
