package delivery_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/sdk"
)

// TestLMTPRequireTLS: LMTP speaks no STARTTLS. A REQUIRETLS message goes
// to an LMTP server on this machine (a loopback address or a unix socket:
// final delivery, RFC 8689 §4.2.1 binds relays) without the demand, and
// is refused (5.7.30) for one across a network, before any connection.
func TestLMTPRequireTLS(t *testing.T) {
	t.Run("loopback", func(t *testing.T) {
		ln := listenLoopback(t)
		done := scriptedServer(t, ln, `
			S: 220 lmtp.test LMTP ready
			C: LHLO gw.test
			S: 250-lmtp.test
			S: 250-PIPELINING
			S: 250 8BITMIME
			C: MAIL FROM:<alice@sender.test>
			C: RCPT TO:<bob@example.test>
			C: DATA
			S: 250 2.1.0 Ok
			S: 250 2.1.5 Ok
			S: 354 OK
			C: From: alice@sender.test
			C: Subject: hi
			C:
			C: ..dotted line
			C: bye
			C: .
			S: 250 2.0.0 <bob@example.test> Saved
			C: QUIT
			S: 221 2.0.0 Bye`)
		job, _ := newTestJob(delivery.Route{Transport: "lmtp", Via: ln.Addr().String()}, smtpTestBody, "bob@example.test")
		job.Envelope.RequireTLS = true
		got := newLMTPTransport(t).Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Delivered {
			t.Errorf("Deliver = %+v, want delivered to the local LMTP server", got)
		}
		<-done
	})
	t.Run("across a network", func(t *testing.T) {
		job, opens := newTestJob(delivery.Route{Transport: "lmtp", Via: "192.0.2.24:24"}, smtpTestBody, "bob@example.test")
		job.Envelope.RequireTLS = true
		got := newLMTPTransport(t).Deliver(context.Background(), job)
		want := []delivery.Result{{Class: delivery.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 30}, Local: true,
			Text: "REQUIRETLS: the LMTP server 192.0.2.24:24 is reached over TCP without TLS, off this machine"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
		if opens.Load() != 0 {
			t.Errorf("the message was opened")
		}
	})
}
