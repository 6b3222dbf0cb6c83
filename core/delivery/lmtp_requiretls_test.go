package delivery_test

import (
	"bufio"
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
)

// TestReviewLMTPOverTCPDropsRequireTLS: the LMTP transport speaks no
// STARTTLS, and for a REQUIRETLS message it strips the demand and sends
// the message in clear text over TCP, to whatever host:port the route
// (or a predelivery hook's Route effect) names. "Final delivery" holds
// for a unix socket, not for a TCP hop that may cross a network. On main
// the clear-text LMTP server gets the message.
func TestReviewLMTPOverTCPDropsRequireTLS(t *testing.T) {
	ln := listenLoopback(t)
	var gotBody atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		w := func(s string) { conn.Write([]byte(s + "\r\n")) }
		w("220 lmtp.test LMTP ready")
		inData := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case inData && line == ".":
				inData = false
				w("250 2.0.0 Saved")
			case inData:
				gotBody.Store(true)
			case strings.HasPrefix(line, "LHLO"):
				w("250-lmtp.test")
				w("250 8BITMIME")
			case line == "DATA":
				inData = true
				w("354 go")
			case line == "QUIT":
				w("221 bye")
				return
			default:
				w("250 OK")
			}
		}
	}()
	job, _ := newTestJob(delivery.Route{Transport: "lmtp", Via: ln.Addr().String()}, smtpTestBody, "bob@example.test")
	job.Envelope.RequireTLS = true
	got := newLMTPTransport(t).Deliver(context.Background(), job)
	ln.Close()
	<-done
	if gotBody.Load() || (len(got) == 1 && got[0].Class == delivery.Delivered) {
		t.Errorf("Deliver = %+v: a REQUIRETLS message went in clear text over TCP to an LMTP server", got)
	}
}
