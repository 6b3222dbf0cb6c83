package gateway_test

// Issue 9's attacks at the edge, through a whole gateway.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestPostmasterIsNotReflected is issue 9's reproduction: MAIL FROM a
// victim, RCPT TO:<postmaster>, a spam body. The message reaches this
// host's postmaster (delivery.postmaster, else postmaster@hostname), and
// when that fails nothing goes back to the victim.
func TestPostmasterIsNotReflected(t *testing.T) {
	for _, tc := range []struct {
		name     string
		delivery string // inside delivery { }
		mailbox  string // the Maildir folder under mail/ it lands in; "" = delivery fails
	}{
		{"delivery.postmaster", `postmaster = "hostmaster@example.test"`, "example.test/hostmaster"},
		{"postmaster@hostname", `route "mx.test" {
    transport = "maildir"
    path      = "mail"
  }`, "mx.test/postmaster"},
		{"undeliverable", ``, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := gatewaytest.Start(t, `
hostname = "mx.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
delivery {
  `+tc.delivery+`
  route "example.test" {
    transport = "maildir"
    path      = "mail"
  }
  route "victim.test" {
    transport = "maildir"
    path      = "mail"
  }
}
`)
			smtptest.Run(t, g.Addr(t, "mx"), `
				S: 220 mx.test ESMTP ready
				C: HELO spammer.test
				S: 250 mx.test
				C: MAIL FROM:<victim@victim.test>
				S: 250 2.1.0 Ok
				C: RCPT TO:<PostMaster>
				S: 250 2.1.5 Ok
				C: DATA
				S: 354 End data with <CR><LF>.<CR><LF>
				C: Subject: cheap pills
				C:
				C: Buy now.
				C: .
				S: 250 2.0.0 Ok: queued as *
				C: QUIT
				S: 221 2.0.0 Bye
			`)
			mail := filepath.Join(filepath.Dir(g.Path), "mail")
			if !gatewaytest.Eventually(10*time.Second, func() bool { return len(g.Queued(t)) == 0 }) {
				t.Fatalf("the message is still queued")
			}
			if tc.mailbox == "" && !g.Log().Wait(time.Second, "domain=mx.test transport=smtp rcpts=1 class=permanent") {
				t.Errorf("delivery to postmaster@mx.test did not fail")
			}
			if tc.mailbox != "" {
				files, _ := filepath.Glob(filepath.Join(mail, tc.mailbox, "new", "*"))
				if len(files) != 1 {
					t.Fatalf("%d messages for the postmaster in %s, want 1", len(files), tc.mailbox)
				}
				if b, _ := os.ReadFile(files[0]); !strings.Contains(string(b), "Buy now.") {
					t.Errorf("the postmaster got:\n%s", b)
				}
			}
			if _, err := os.Stat(filepath.Join(mail, "victim.test")); !os.IsNotExist(err) {
				t.Errorf("the victim got mail (%v)", err)
			}
		})
	}
}

// TestFreeSpaceAtMAIL checks the spool's free space reaches the SMTP
// server: a max_message_size whose reserve (1.5 times it) no disk has
// makes every MAIL a 452; the default one does not.
func TestFreeSpaceAtMAIL(t *testing.T) {
	for _, tc := range []struct{ size, reply string }{
		{"", "250 2.1.0 Ok"},
		{`max_message_size = "4000000TB"`, "452 4.3.1 Insufficient system storage"},
	} {
		g := gatewaytest.Start(t, `
hostname = "mx.test"
listener "mx" {
  address = "127.0.0.1:0"
  `+tc.size+`
}
domains = ["example.test"]
`+gatewaytest.DeadRoute)
		smtptest.Run(t, g.Addr(t, "mx"), `
			S: 220 mx.test ESMTP ready
			C: HELO client.test
			S: 250 mx.test
			C: MAIL FROM:<a@client.test>
			S: `+tc.reply+`
		`)
	}
}
