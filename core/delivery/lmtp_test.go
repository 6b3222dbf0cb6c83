package delivery_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/sdk"
)

// lmtpSession is an LMTP conversation for three recipients: one refused
// at RCPT, then one reply after the message for each of the other two.
const lmtpSession = `
S: 220 lmtp.test LMTP ready
C: LHLO gw.test
S: 250-lmtp.test
S: 250-PIPELINING
S: 250-ENHANCEDSTATUSCODES
S: 250 8BITMIME
C: MAIL FROM:<alice@sender.test>
C: RCPT TO:<bob@example.test>
C: RCPT TO:<nobody@example.test>
C: RCPT TO:<carol@example.test>
C: DATA
S: 250 2.1.0 Ok
S: 250 2.1.5 Ok
S: 550 5.1.1 <nobody@example.test> User doesn't exist
S: 250 2.1.5 Ok
S: 354 OK
C: From: alice@sender.test
C: Subject: hi
C:
C: ..dotted line
C: bye
C: .
S: 250 2.0.0 <bob@example.test> Saved
S: 452 4.2.2 <carol@example.test> Quota exceeded
C: QUIT
S: 221 2.0.0 Bye`

func newLMTPTransport(t *testing.T) *delivery.LMTP {
	return delivery.NewLMTP(delivery.LMTPOptions{Hostname: "gw.test", ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second, Log: transportLog(t)})
}

func TestLMTPDeliver(t *testing.T) {
	lmtpResults := func(remote string) []delivery.Result {
		return []delivery.Result{
			{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "250 2.0.0 <bob@example.test> Saved", RemoteMTA: remote},
			{Class: delivery.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 1, 1}, Text: "550 5.1.1 <nobody@example.test> User doesn't exist", RemoteMTA: remote},
			{Class: delivery.Temporary, Code: 452, Enhanced: sdk.EnhancedCode{4, 2, 2}, Text: "452 4.2.2 <carol@example.test> Quota exceeded", RemoteMTA: remote},
		}
	}
	t.Run("tcp", func(t *testing.T) {
		ln := listenLoopback(t)
		done := scriptedServer(t, ln, lmtpSession)
		job, _ := newTestJob(delivery.Route{Transport: "lmtp", Via: ln.Addr().String()}, smtpTestBody, "bob@example.test", "nobody@example.test", "carol@example.test")
		got := newLMTPTransport(t).Deliver(context.Background(), job)
		<-done
		if diff := cmp.Diff(lmtpResults("[127.0.0.1]"), got); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
	})
	t.Run("unix", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "lmtp.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		done := scriptedServer(t, ln, lmtpSession)
		// Path wins over Via.
		job, _ := newTestJob(delivery.Route{Transport: "lmtp", Path: path, Via: "127.0.0.1:1"}, smtpTestBody, "bob@example.test", "nobody@example.test", "carol@example.test")
		got := newLMTPTransport(t).Deliver(context.Background(), job)
		<-done
		if diff := cmp.Diff(lmtpResults(""), got); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
	})
}

func TestLMTPFailures(t *testing.T) {
	closed := listenLoopback(t)
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name   string
		script string // "" = no server
		route  func(addr string) delivery.Route
		want   delivery.Result
		prefix bool // want.Text is a prefix
	}{
		{
			name:  "no route",
			route: func(string) delivery.Route { return delivery.Route{Transport: "lmtp"} },
			want:  delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 5}, Text: "LMTP route with neither a socket path nor a host:port", Local: true},
		},
		{
			name:  "no port",
			route: func(string) delivery.Route { return delivery.Route{Via: "lmtp.local"} },
			want:  delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 5}, Text: "LMTP route lmtp.local has no port", Local: true},
		},
		{
			name:   "connection refused",
			route:  func(string) delivery.Route { return delivery.Route{Via: closedAddr} },
			want:   delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: "connection failed: " + closedAddr + ": ", Local: true},
			prefix: true,
		},
		{
			name: "LHLO refused",
			script: `
S: 220 lmtp.test LMTP ready
C: LHLO gw.test
S: 500 5.5.1 Unknown command
C: QUIT
S: 221 Bye`,
			route: func(addr string) delivery.Route { return delivery.Route{Via: addr} },
			want:  delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 5, 1}, Text: "500 5.5.1 Unknown command", RemoteMTA: "[127.0.0.1]"},
		},
		{
			name: "MAIL refused",
			script: `
S: 220 lmtp.test LMTP ready
C: LHLO gw.test
S: 250 lmtp.test
C: MAIL FROM:<alice@sender.test>
S: 451 4.3.0 Try later
C: QUIT
S: 221 Bye`,
			route: func(addr string) delivery.Route { return delivery.Route{Via: addr} },
			want:  delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Text: "451 4.3.0 Try later", RemoteMTA: "[127.0.0.1]"},
		},
		{
			name: "lost after the message",
			script: `
S: 220 lmtp.test LMTP ready
C: LHLO gw.test
S: 250 lmtp.test
C: MAIL FROM:<alice@sender.test>
S: 250 ok
C: RCPT TO:<bob@example.test>
S: 250 ok
C: DATA
S: 354 go
C: From: alice@sender.test
C: Subject: hi
C:
C: ..dotted line
C: bye
C: .
S: <close>`,
			route:  func(addr string) delivery.Route { return delivery.Route{Via: addr} },
			want:   delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 2}, RemoteMTA: "[127.0.0.1]", Local: true},
			prefix: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := ""
			var done <-chan struct{}
			if tc.script != "" {
				ln := listenLoopback(t)
				addr = ln.Addr().String()
				done = scriptedServer(t, ln, tc.script)
			}
			job, _ := newTestJob(tc.route(addr), smtpTestBody, "bob@example.test")
			got := newLMTPTransport(t).Deliver(context.Background(), job)
			if done != nil {
				<-done
			}
			if len(got) != 1 {
				t.Fatalf("Deliver returned %d results, want 1", len(got))
			}
			if tc.prefix {
				if !strings.HasPrefix(got[0].Text, tc.want.Text) {
					t.Errorf("Text = %q, want prefix %q", got[0].Text, tc.want.Text)
				}
				got[0].Text = tc.want.Text
			}
			if diff := cmp.Diff(tc.want, got[0]); diff != "" {
				t.Errorf("Deliver (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLMTPHandoff: an LMTP server is the final delivery agent unless it
// offers DSN; then it gets NOTIFY, ORCPT, ENVID and RET, and the success
// DSN is its to send.
func TestLMTPHandoff(t *testing.T) {
	tests := []struct {
		name, ext, mail, rcpt string
		want                  delivery.Handoff
	}{
		{"DSN", "DSN", " RET=HDRS ENVID=env1", " NOTIFY=SUCCESS ORCPT=rfc822;bob@example.test", delivery.HandoffDSN},
		{"no DSN", "8BITMIME", "", "", delivery.HandoffFinal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listenLoopback(t)
			done := scriptedServer(t, ln, fmt.Sprintf(handoffScript, "LHLO", tt.ext, tt.mail, tt.rcpt))
			got := newLMTPTransport(t).Deliver(context.Background(), handoffJob(delivery.Route{Transport: "lmtp", Via: ln.Addr().String()}))
			<-done
			want := []delivery.Result{{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0},
				Text: "250 2.0.0 Ok: queued as X1", RemoteMTA: "[127.0.0.1]", Handoff: tt.want}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Deliver (-want +got):\n%s", diff)
			}
		})
	}
}
