package smtp_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// TestStats: the counters behind the admin metrics.
func TestStats(t *testing.T) {
	reject := at(sdk.StageData, "", sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "no"))
	addr, _, srv := start(t, func(o *smtp.Options) { o.Hooks = reject })
	if got := srv.Stats(); !reflect.DeepEqual(got, smtp.ServerStats{}) {
		t.Errorf("Stats before any session = %+v, want zero", got)
	}
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: x
		C:
		C: x
		C: .
		S: 554 5.7.1 no
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	addr2, _, srv2 := start(t, nil)
	big := "C: " + strings.Repeat("x", 998) + "\n"
	smtptest.Run(t, addr2, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: x
		C:
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: big
		C:
		`+strings.Repeat(big, 11)+`
		C: .
		S: 552 5.3.4 Message too big
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	for _, tt := range []struct {
		srv  *smtp.Server
		want smtp.ServerStats
	}{
		{srv, smtp.ServerStats{SessionsTotal: 1, MessagesRejected: 1,
			Refusals: map[smtp.Refusal]int64{{Command: "data", Code: 554, Enhanced: "5.7.1"}: 1}}},
		{srv2, smtp.ServerStats{SessionsTotal: 1, MessagesAccepted: 1, MessagesRejected: 1,
			Refusals: map[smtp.Refusal]int64{{Command: "data", Code: 552, Enhanced: "5.3.4"}: 1}}},
	} {
		deadline := time.Now().Add(5 * time.Second)
		got := tt.srv.Stats()
		for got.SessionsActive != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // the session ends just after the client sees EOF
			got = tt.srv.Stats()
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Stats = %+v, want %+v", got, tt.want)
		}
	}
}
