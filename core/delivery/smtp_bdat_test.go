package delivery_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// binaryTestBody is BINARYMIME content: NUL, bare CR and LF, a line far
// past 998 bytes, a lone dot line, no final line end.
var binaryTestBody = "From: alice@sender.test\r\nSubject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
	"\x00nul\rbare CR\nbare LF\n.\r\n" + strings.Repeat("\xff\x00long", 100_000) + "\r\nend\r\r"

// bdatLog records the BDAT commands a test MTA saw.
type bdatLog struct {
	mu   sync.Mutex
	args []string
}

func (l *bdatLog) hook(reject int) func(req *hook.Request) sdk.Decision {
	return func(req *hook.Request) sdk.Decision {
		if req.Stage != sdk.StageCommand || req.Command != "BDAT" {
			return sdk.Decision{}
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.args = append(l.args, req.Arg)
		if len(l.args) == reject {
			return sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "Chunk refused")
		}
		return sdk.Decision{}
	}
}

func (l *bdatLog) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.args...)
}

// TestSMTPBinaryMIME: a BINARYMIME message reaches a next hop that offers
// CHUNKING and BINARYMIME over BDAT, byte for byte.
func TestSMTPBinaryMIME(t *testing.T) {
	var bdat bdatLog
	m := startTestMTA(t, testMTAConfig{hook: bdat.hook(0)})
	job, _ := newTestJob(viaMTA(m), binaryTestBody, "bob@example.test")
	job.Envelope.Body = envelope.BodyBinaryMIME
	got := newSMTPTransport(t, delivery.SMTPOptions{}).Deliver(context.Background(), job)
	if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].Local {
		t.Fatalf("Deliver = %+v, want delivered by the next hop", got)
	}
	msgs := m.spool.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server spooled %d messages, want 1", len(msgs))
	}
	if !bytes.Equal(msgs[0].Body, []byte(binaryTestBody)) || msgs[0].Envelope.Body != envelope.BodyBinaryMIME {
		t.Errorf("stored %d bytes with BODY %v, want the %d bytes sent and BINARYMIME", len(msgs[0].Body), msgs[0].Envelope.Body, len(binaryTestBody))
	}
	if args := bdat.seen(); len(args) != 3 || args[2] != "75819 LAST" {
		t.Errorf("BDAT commands %q, want two chunks of 256 KiB and LAST", args)
	}
}

// TestSMTPBinaryMIMEUnsupported: a next hop without BINARYMIME cannot take
// a binary message: Permanent 554 5.6.3, decided here (Local, no
// RemoteMTA), nothing sent, the connection kept.
func TestSMTPBinaryMIMEUnsupported(t *testing.T) {
	ln := listenLoopback(t)
	done := scriptedServer(t, ln, `
S: 220 mx.test ESMTP
C: EHLO gw.test
S: 250-mx.test
S: 250-PIPELINING
S: 250-CHUNKING
S: 250 8BITMIME
C: QUIT
S: 221 2.0.0 Bye`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	job, opens := newTestJob(delivery.Route{Via: ln.Addr().String(), TLS: delivery.TLSNone}, binaryTestBody, "bob@example.test", "carol@example.test")
	job.Envelope.Body = envelope.BodyBinaryMIME
	got := tr.Deliver(context.Background(), job)
	r := delivery.Result{Class: delivery.Permanent, Code: 554, Enhanced: sdk.EnhancedCode{5, 6, 3}, Local: true,
		Text: "the message is binary (BODY=BINARYMIME) and 127.0.0.1 [" + ln.Addr().String() +
			"] does not accept binary content (it offers no CHUNKING and BINARYMIME); it cannot be sent there as it is"}
	if diff := cmp.Diff([]delivery.Result{r, r}, got, ignoreTLSPolicy); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	if n := tr.Idle(); n != 1 {
		t.Errorf("Idle() = %d, want 1 (nothing was sent)", n)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("Open called %d times, want 1", n)
	}
	tr.Close()
	<-done
}

// TestSMTPAlwaysBDAT: with AlwaysBDAT a plain message goes with BDAT too,
// and arrives as DATA would have brought it.
func TestSMTPAlwaysBDAT(t *testing.T) {
	var bdat bdatLog
	m := startTestMTA(t, testMTAConfig{hook: bdat.hook(0)})
	job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test")
	got := newSMTPTransport(t, delivery.SMTPOptions{AlwaysBDAT: true}).Deliver(context.Background(), job)
	if len(got) != 1 || got[0].Class != delivery.Delivered {
		t.Fatalf("Deliver = %+v, want delivered", got)
	}
	checkSpooled(t, m, []string{"bob@example.test"})
	if args := bdat.seen(); !cmp.Equal(args, []string{"59 LAST"}) {
		t.Errorf("BDAT commands %q, want [59 LAST]", args)
	}
}

// TestSMTPBDATChunkRefused: a chunk the next hop refuses is that hop's
// answer to the message (not ours); nothing is stored and the session,
// reset, goes back to the pool.
func TestSMTPBDATChunkRefused(t *testing.T) {
	var bdat bdatLog
	m := startTestMTA(t, testMTAConfig{hook: bdat.hook(2)})
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	// Four chunks: the third is on its way when the second is refused.
	job, _ := newTestJob(viaMTA(m), binaryTestBody+strings.Repeat("x", 300_000), "bob@example.test")
	job.Envelope.Body = envelope.BodyBinaryMIME
	got := tr.Deliver(context.Background(), job)
	want := []delivery.Result{{Class: delivery.Permanent, Code: 554, Enhanced: sdk.EnhancedCode{5, 7, 1},
		Text: "554 5.7.1 Chunk refused", RemoteMTA: "[127.0.0.1]"}}
	if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	if n := len(m.spool.Messages()); n != 0 {
		t.Errorf("server spooled %d messages, want 0", n)
	}
	if n := tr.Idle(); n != 1 {
		t.Errorf("Idle() = %d, want 1", n)
	}
	if args := bdat.seen(); len(args) != 3 || strings.HasSuffix(args[2], "LAST") {
		t.Errorf("BDAT commands %q, want three chunks without LAST (one in the pipeline after the refused one)", args)
	}
}
