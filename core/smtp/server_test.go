package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// ehloFront is the start of every EHLO reply of the base server, up to
// the keywords that depend on TLS and AUTH.
const ehloFront = `
S: 250-mx.test Hello client.test
S: 250-PIPELINING
S: 250-SIZE 10240
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-ENHANCEDSTATUSCODES
S: 250-CHUNKING
S: 250-BINARYMIME
`

// ehlo is the EHLO reply of the base server (no TLS, no AUTH).
const ehlo = ehloFront + "S: 250 DSN\n"

// ehloTLS is the EHLO reply with STARTTLS offered.
const ehloTLS = ehloFront + "S: 250-DSN\nS: 250 STARTTLS\n"

const greeting = "S: 220 mx.test ESMTP ready\n"

// hello is the greeting and an EHLO exchange.
const hello = greeting + "C: EHLO client.test\n" + ehlo

func baseOptions() smtp.Options {
	return smtp.Options{
		Hostname: "mx.test",
		Listener: config.Listener{
			Name:           "test",
			MaxMessageSize: 10240,
			MaxRecipients:  5,
			MaxLineLength:  1000,
			MaxHeaderSize:  4096,
			MaxErrors:      50,
		},
		LocalDomains:       []string{"example.org"},
		RelayNetworks:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		RelayAuthenticated: true,
	}
}

// start runs a server with the base options changed by mod.
func start(t *testing.T, mod func(*smtp.Options)) (string, *smtptest.MemorySpool, *smtp.Server) {
	t.Helper()
	opt := baseOptions()
	spool := &smtptest.MemorySpool{}
	opt.Spool = spool
	if mod != nil {
		mod(&opt)
	}
	addr, srv := smtptest.StartServer(t, opt)
	return addr, spool, srv
}

func wantMessages(t *testing.T, spool *smtptest.MemorySpool, n int) []smtptest.Message {
	t.Helper()
	msgs := spool.Messages()
	if len(msgs) != n {
		t.Fatalf("spool has %d messages, want %d", len(msgs), n)
	}
	return msgs
}

// hooks is a dispatcher over one handler function.
func hooks(f func(req *hook.Request) (sdk.Decision, sdk.Effects)) hook.Dispatcher {
	return hook.NewChain(nil, hook.Entry{Handler: hooktest.Func{
		HandlerName: "test",
		F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
			d, e := f(req)
			return d, e, nil
		},
	}})
}

// at answers d at stage (and, for the command stage, verb) only.
func at(stage sdk.Stage, verb string, d sdk.Decision) hook.Dispatcher {
	return hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
		if req.Stage == stage && (verb == "" || req.Command == verb) {
			return d, sdk.Effects{}
		}
		return sdk.Decision{}, sdk.Effects{}
	})
}

func TestGreetingAndQuit(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, greeting+`
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
}

func TestEHLO(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: EHLO
		S: 501 5.5.4 Syntax: EHLO hostname
		C: HELO
		S: 501 5.5.4 Syntax: HELO hostname
		C: HELO client.test
		S: 250 mx.test
		C: ehlo other.test
		S: 250-mx.test Hello other.test
		S~ 250-.*
		S~ 250-.*
		S~ 250-.*
		S~ 250-.*
		S~ 250-.*
		S~ 250-.*
		S~ 250-.*
		S: 250 DSN
	`)
}

func TestHELOForbidsESMTPParameters(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, greeting+`
		C: HELO client.test
		S: 250 mx.test
		C: MAIL FROM:<a@example.net> SIZE=100
		S: 555 5.5.4 ESMTP parameters need EHLO
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org> NOTIFY=NEVER
		S: 555 5.5.4 ESMTP parameters need EHLO
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: hi
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	m := wantMessages(t, spool, 1)[0]
	if !strings.Contains(string(m.Header), " with SMTP id M0001") {
		t.Errorf("Received header %q: want protocol SMTP", m.Header)
	}
}

func TestMessage(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<sender@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<rcpt@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: hello
		C:
		C: Hello there.
		C: ..leading dot
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	m := wantMessages(t, spool, 1)[0]
	if time.Since(m.Envelope.Received) > time.Minute {
		t.Errorf("Received time %v is not now", m.Envelope.Received)
	}
	want := envelope.Envelope{
		Sender:     envelope.Address{Local: "sender", Domain: "example.net"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "rcpt", Domain: "example.org"}}},
		ClientIP:   "127.0.0.1",
		ClientHELO: "client.test",
		Received:   m.Envelope.Received,
	}
	if diff := cmp.Diff(want, m.Envelope); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	wantHeader := "Received: from client.test ([127.0.0.1])\r\n" +
		"\tby mx.test (gateway) with ESMTP id M0001\r\n" +
		"\tfor <rcpt@example.org>; " + m.Envelope.Received.Format(time.RFC1123Z) + "\r\n"
	if got := string(m.Header); got != wantHeader {
		t.Errorf("header:\ngot  %q\nwant %q", got, wantHeader)
	}
	if got, want := string(m.Body), "Subject: hello\r\n\r\nHello there.\r\n.leading dot\r\n"; got != want {
		t.Errorf("body:\ngot  %q\nwant %q", got, want)
	}
	if !bytes.HasPrefix(m.Data(), m.Header) {
		t.Errorf("Data() does not start with the header")
	}
}

func TestReceivedSeveralRecipients(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<>
		S: 250 2.1.0 Ok
		C: RCPT TO:<a@example.org>
		S: 250 2.1.5 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	m := wantMessages(t, spool, 1)[0]
	want := "Received: from client.test ([127.0.0.1])\r\n" +
		"\tby mx.test (gateway) with ESMTP id M0001;\r\n" +
		"\t" + m.Envelope.Received.Format(time.RFC1123Z) + "\r\n"
	if got := string(m.Header); got != want {
		t.Errorf("header:\ngot  %q\nwant %q", got, want)
	}
	if !m.Envelope.Sender.IsNull() {
		t.Errorf("sender %v, want <>", m.Envelope.Sender)
	}
}

func TestPipelining(t *testing.T) {
	addr, spool, _ := start(t, nil)
	// Every batch of C lines goes out in one write.
	smtptest.Run(t, addr, greeting+`
		C: EHLO client.test
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: RCPT TO:<nobody@elsewhere.test>
		C: RCPT TO:<c@example.org>
		C: DATA
		`+ehlo+`
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 550 5.7.1 Relay access denied
		S: 250 2.1.5 Ok
		S: 354 End data with <CR><LF>.<CR><LF>
		C: one
		C: .
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: DATA
		S: 250 2.0.0 Ok: queued as M0001
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 354 End data with <CR><LF>.<CR><LF>
		C: two
		C: .
		C: RSET
		C: NOOP
		C: QUIT
		S: 250 2.0.0 Ok: queued as M0002
		S: 250 2.0.0 Ok
		S: 250 2.0.0 Ok
		S: 221 2.0.0 Bye
		EOF
	`)
	msgs := wantMessages(t, spool, 2)
	if n := len(msgs[0].Envelope.Recipients); n != 2 {
		t.Errorf("first message has %d recipients, want 2", n)
	}
	if got := string(msgs[1].Body); got != "two\r\n" {
		t.Errorf("second body %q", got)
	}
}

// TestBuffersNotShared: a session's read and write buffers go to the next
// session once it ends, emptied: what a client pipelined after QUIT is
// not read as the next client's commands.
func TestBuffersNotShared(t *testing.T) {
	addr, _, _ := start(t, nil)
	for range 20 {
		smtptest.Run(t, addr, greeting+`
			C: QUIT
			C: HELP
			S: 221 2.0.0 Bye
			EOF
		`)
		smtptest.Run(t, addr, greeting+`
			C: NOOP
			S: 250 2.0.0 Ok
			C: QUIT
			S: 221 2.0.0 Bye
			EOF
		`)
	}
}

func TestSize(t *testing.T) {
	addr, spool, _ := start(t, nil)
	big := strings.Repeat("x", 998)
	var body strings.Builder
	body.WriteString("C: Subject: big\nC:\n")
	for range 11 {
		body.WriteString("C: " + big + "\n")
	}
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net> SIZE=10241
		S: 552 5.3.4 Message size exceeds fixed maximum message size
		C: MAIL FROM:<a@example.net> SIZE=10240
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		`+body.String()+`
		C: .
		S: 552 5.3.4 Message too big
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: NOOP
		S: 250 2.0.0 Ok
	`)
	wantMessages(t, spool, 0)
	if spool.Aborted() != 1 {
		t.Errorf("aborted drafts %d, want 1", spool.Aborted())
	}
}

func TestHeaderTooBig(t *testing.T) {
	addr, spool, _ := start(t, nil)
	var hdr strings.Builder
	for i := range 10 {
		fmt.Fprintf(&hdr, "C: X-Header-%d: %s\n", i, strings.Repeat("h", 500))
	}
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		`+hdr.String()+`
		C:
		C: body
		C: .
		S: 552 5.3.4 Message header too large
		C: NOOP
		S: 250 2.0.0 Ok
	`)
	wantMessages(t, spool, 0)
}

func TestDSNAndUTF8Parameters(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<jörg@example.net> BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159 SIZE=200
		S: 250 2.1.0 Ok
		C: RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org
		S: 250 2.1.5 Ok
		C: RCPT TO:<zoë@example.org> NOTIFY=NEVER
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: grüße
		C:
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	m := wantMessages(t, spool, 1)[0]
	e := m.Envelope
	want := envelope.Envelope{
		Sender: envelope.Address{Local: "jörg", Domain: "example.net"},
		Recipients: []envelope.Recipient{
			{Address: envelope.Address{Local: "bob", Domain: "example.org"}, Notify: envelope.NotifySuccess | envelope.NotifyFailure, ORCPT: "rfc822;bob@example.org"},
			{Address: envelope.Address{Local: "zoë", Domain: "example.org"}, Notify: envelope.NotifyNever},
		},
		Size:       200,
		Body:       envelope.Body8BitMIME,
		SMTPUTF8:   true,
		Ret:        envelope.RetHdrs,
		EnvID:      "QQ314159",
		ClientIP:   "127.0.0.1",
		ClientHELO: "client.test",
		Received:   e.Received,
	}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("envelope (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(m.Header), " with UTF8SMTP id ") {
		t.Errorf("header %q: want UTF8SMTP", m.Header)
	}
}

func TestUTF8NeedsSMTPUTF8(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<jörg@example.net>
		S: 553 5.6.7 UTF-8 addresses need SMTPUTF8
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<zoë@example.org>
		S: 553 5.6.7 UTF-8 addresses need SMTPUTF8
	`)
}

func TestBDAT(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		B: BDAT 14\r\nSubject: x\r\n\r\nBDAT 6 LAST\r\nbody\r\n
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 250 2.0.0 14 octets received
		S: 250 2.0.0 Ok: queued as M0001
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: BDAT 0 LAST
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 250 2.0.0 Ok: queued as M0002
		B: BDAT 3 LAST\r\nabc
		C: QUIT
		S: 503 5.5.1 Need MAIL command
		S: 221 2.0.0 Bye
	`)
	msgs := wantMessages(t, spool, 2)
	if got := string(msgs[0].Body); got != "Subject: x\r\n\r\nbody\r\n" {
		t.Errorf("body %q", got)
	}
	if len(msgs[1].Body) != 0 {
		t.Errorf("BDAT 0 LAST body %q, want empty", msgs[1].Body)
	}
}

func TestBDATBinaryMIME(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net> BODY=BINARYMIME
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 503 5.5.1 BODY=BINARYMIME requires BDAT
		B: BDAT 10 LAST\r\nA\r\n\r\n\x00\n\r.\n
		S: 250 2.0.0 Ok: queued as M0001
	`)
	m := wantMessages(t, spool, 1)[0]
	if got, want := string(m.Body), "A\r\n\r\n\x00\n\r.\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
	if m.Envelope.Body != envelope.BodyBinaryMIME {
		t.Errorf("body type %q", m.Envelope.Body)
	}
}

func TestBDATTooBig(t *testing.T) {
	addr, spool, _ := start(t, nil)
	chunk := `\r\n` + strings.Repeat("y", 5998)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: BDAT 6000
		B: `+chunk+`
		C: BDAT 6000
		B: `+chunk+`
		C: BDAT 4 LAST
		B: abcd
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 250 2.0.0 6000 octets received
		S: 552 5.3.4 Message too big
		S: 503 5.5.1 Need MAIL command
		S: 250 2.1.0 Ok
	`)
	wantMessages(t, spool, 0)
}

func TestBDATBareLineEndings(t *testing.T) {
	t.Run("reject", func(t *testing.T) {
		addr, spool, _ := start(t, nil)
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			C: RCPT TO:<b@example.org>
			B: BDAT 3\r\na\r\r
			B: BDAT 3 LAST\r\n\nb\n
			S: 250 2.1.0 Ok
			S: 250 2.1.5 Ok
			S: 250 2.0.0 3 octets received
			S: 550 5.5.2 Bare CR or LF not allowed, use CRLF line endings
			C: NOOP
			S: 250 2.0.0 Ok
		`)
		wantMessages(t, spool, 0)
	})
	t.Run("fix", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.BareLineEndings = "fix" })
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			C: RCPT TO:<b@example.org>
			B: BDAT 3\r\na\r\r
			B: BDAT 5 LAST\r\n\nb\nc\r
			S: 250 2.1.0 Ok
			S: 250 2.1.5 Ok
			S: 250 2.0.0 3 octets received
			S: 250 2.0.0 Ok: queued as M0001
		`)
		m := wantMessages(t, spool, 1)[0]
		if got, want := string(m.Body), "a\r\n\r\nb\r\nc\r\n"; got != want {
			t.Errorf("body %q, want %q", got, want)
		}
	})
	t.Run("split CRLF is fine", func(t *testing.T) {
		addr, spool, _ := start(t, nil)
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			C: RCPT TO:<b@example.org>
			B: BDAT 2\r\na\r
			B: BDAT 1 LAST\r\n\n
			S: 250 2.1.0 Ok
			S: 250 2.1.5 Ok
			S: 250 2.0.0 2 octets received
			S: 250 2.0.0 Ok: queued as M0001
		`)
		m := wantMessages(t, spool, 1)[0]
		if got := string(m.Body); got != "a\r\n" {
			t.Errorf("body %q", got)
		}
	})
}

func TestDATAAfterBDAT(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		B: BDAT 5\r\nabcde
		C: DATA
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 250 2.0.0 5 octets received
		S: 503 5.5.1 DATA not allowed during a BDAT transfer
		B: BDAT 2 LAST\r\nf\n
		S: 550 5.5.2 Bare CR or LF not allowed, use CRLF line endings
		C: RSET
		S: 250 2.0.0 Ok
	`)
	wantMessages(t, spool, 0)
}

func TestSimpleCommands(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, greeting+`
		C: NOOP
		S: 250 2.0.0 Ok
		C: NOOP whatever
		S: 250 2.0.0 Ok
		C: RSET
		S: 250 2.0.0 Ok
		C: RSET x
		S: 501 5.5.4 Syntax: RSET
		C: HELP
		S: 214 2.0.0 See RFC 5321
		C: HELP MAIL
		S: 214 2.0.0 See RFC 5321
		C: VRFY postmaster
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
		C: EXPN staff
		S: 502 5.5.1 EXPN not available
		C: TURN
		S: 502 5.5.1 TURN not supported
		C: ETRN example.org
		S: 502 5.5.1 ETRN not available
		C: XYZZY
		S: 500 5.5.1 Unrecognized command
		C: GET / HTTP/1.0
		S: 500 5.5.1 Unrecognized command
		C: quit
		S: 221 2.0.0 Bye
		EOF
	`)
}

func TestBadSequence(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, greeting+`
		C: MAIL FROM:<a@example.net>
		S: 503 5.5.1 Send EHLO/HELO first
		C: RCPT TO:<b@example.org>
		S: 503 5.5.1 Need MAIL command
		C: DATA
		S: 503 5.5.1 Need MAIL command
		B: BDAT 4\r\nMAIL
		S: 503 5.5.1 Need MAIL command
		C: EHLO client.test
		`+ehlo+`
		C: DATA
		S: 503 5.5.1 Need MAIL command
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: MAIL FROM:<a@example.net>
		S: 503 5.5.1 Nested MAIL command
		C: DATA
		S: 503 5.5.1 No valid recipients
		B: BDAT 4 LAST\r\nQUIT
		S: 503 5.5.1 No valid recipients
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: EHLO client.test
		`+ehlo+`
		C: RCPT TO:<b@example.org>
		S: 503 5.5.1 Need MAIL command
	`)
}

func TestSyntaxErrors(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:a@example.net
		S: 501 5.5.4 Bad address syntax
		C: MAIL TO:<a@example.net>
		S: 501 5.5.4 Syntax error in parameters or arguments
		C: MAIL FROM:<a@example.net> FROB=1
		S: 555 5.5.4 Unsupported parameter
		C: MAIL FROM:<a@example.net> SIZE=abc
		S: 501 5.5.4 Invalid parameter value
		C: MAIL FROM:<a@example.net> BODY=9BIT
		S: 501 5.5.4 Invalid parameter value
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<>
		S: 501 5.5.4 Bad address syntax
		C: RCPT TO:<b@example.org> NOTIFY=SOMETIMES
		S: 501 5.5.4 Invalid parameter value
		C: RCPT TO:<b@example.org> FOO
		S: 555 5.5.4 Unsupported parameter
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA now
		S: 501 5.5.4 Syntax: DATA
		C: BDAT x
		S: 501 5.5.4 Syntax: BDAT size [LAST]
		C: MA!L FROM:<a@example.net>
		S: 500 5.5.2 Syntax error
		B: NOOP\x00\r\n
		S: 500 5.5.2 Syntax error
		B: NOOP\r
		B: x\r\n
		S: 500 5.5.2 Syntax error
		B: NOOP\n
		S: 500 5.5.2 Bare LF not allowed
		C:
		S: 500 5.5.2 Syntax error
		C: NOOP
		S: 250 2.0.0 Ok
	`)
}

func TestTooManyRecipients(t *testing.T) {
	addr, spool, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<r1@example.org>
		C: RCPT TO:<r2@example.org>
		C: RCPT TO:<r3@example.org>
		C: RCPT TO:<r4@example.org>
		C: RCPT TO:<r5@example.org>
		C: RCPT TO:<r6@example.org>
		C: DATA
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 250 2.1.5 Ok
		S: 250 2.1.5 Ok
		S: 250 2.1.5 Ok
		S: 250 2.1.5 Ok
		S: 452 4.5.3 Too many recipients
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	if n := len(wantMessages(t, spool, 1)[0].Envelope.Recipients); n != 5 {
		t.Errorf("%d recipients, want 5", n)
	}
}

func TestLineTooLong(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: NOOP `+strings.Repeat("a", 993)+`
		S: 250 2.0.0 Ok
		C: NOOP `+strings.Repeat("a", 994)+`
		S: 500 5.5.2 Line too long
		C: MAIL FROM:<a@example.net> `+strings.Repeat("b", 50000)+`
		S: 500 5.5.2 Line too long
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
	`)
}

func TestRelay(t *testing.T) {
	t.Run("open relay test", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) {
			o.LocalDomains = append(o.LocalDomains, "Example.COM.")
		})
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<victim@elsewhere.test>
			S: 550 5.7.1 Relay access denied
			C: RCPT TO:<victim@example.org.elsewhere.test>
			S: 550 5.7.1 Relay access denied
			C: RCPT TO:<victim%elsewhere.test@[127.0.0.1]>
			S: 550 5.7.1 Relay access denied
			C: RCPT TO:<b@EXAMPLE.ORG>
			S: 250 2.1.5 Ok
			C: RCPT TO:<c@example.com>
			S: 250 2.1.5 Ok
			C: RCPT TO:<postmaster>
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`)
		m := wantMessages(t, spool, 1)[0]
		want := []envelope.Recipient{
			{Address: envelope.Address{Local: "b", Domain: "EXAMPLE.ORG"}},
			{Address: envelope.Address{Local: "c", Domain: "example.com"}},
			{Address: envelope.Address{Local: "postmaster", Domain: "mx.test"}, Notify: envelope.NotifyNever},
		}
		if diff := cmp.Diff(want, m.Envelope.Recipients); diff != "" {
			t.Errorf("recipients (-want +got):\n%s", diff)
		}
		if m.Envelope.Submitted {
			t.Error("an outside client's message is Submitted")
		}
	})
	t.Run("relay network", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) {
			o.RelayNetworks = append(o.RelayNetworks, smtptest.Loopback())
		})
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<someone@elsewhere.test>
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`)
		if m := wantMessages(t, spool, 1)[0]; !m.Envelope.Submitted {
			t.Error("a relay client's message is not Submitted")
		}
	})
}

// authPlain is the PLAIN response for user and pass.
func authPlain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func passwords(t *testing.T) *smtp.PasswordTable {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return smtp.NewPasswordTable(map[string]string{"alice": string(h)})
}

const ehloAuth = ehloFront + "S: 250-DSN\nS: 250 AUTH PLAIN LOGIN\n"

// ehloTLSAuth is the EHLO reply under TLS with AUTH offered: REQUIRETLS
// too (RFC 8689 §2), STARTTLS no more.
const ehloTLSAuth = ehloFront + "S: 250-DSN\nS: 250-REQUIRETLS\nS: 250 AUTH PLAIN LOGIN\n"

// ehloTLSDone is the EHLO reply under TLS once authenticated.
const ehloTLSDone = ehloFront + "S: 250-DSN\nS: 250 REQUIRETLS\n"

func TestRelayAfterAuth(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Auth = passwords(t)
		o.Listener.AuthInsecure = true
	})
	smtptest.Run(t, addr, greeting+`
		C: EHLO client.test
		`+ehloAuth+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<someone@elsewhere.test>
		S: 550 5.7.1 Relay access denied
		C: RSET
		S: 250 2.0.0 Ok
		C: AUTH PLAIN `+authPlain("alice", "secret")+`
		S: 235 2.7.0 Authentication successful
		C: EHLO client.test
		`+ehlo+`
		C: MAIL FROM:<alice@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<someone@elsewhere.test>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
	`)
	m := wantMessages(t, spool, 1)[0]
	if m.Envelope.AuthUser != "alice" || !m.Envelope.Submitted {
		t.Errorf("AuthUser %q, Submitted %v; want alice, true", m.Envelope.AuthUser, m.Envelope.Submitted)
	}
	if !strings.Contains(string(m.Header), " with ESMTPA id ") {
		t.Errorf("header %q: want ESMTPA", m.Header)
	}

	t.Run("not when RelayAuthenticated is off", func(t *testing.T) {
		addr, _, _ := start(t, func(o *smtp.Options) {
			o.Auth = passwords(t)
			o.Listener.AuthInsecure = true
			o.RelayAuthenticated = false
		})
		smtptest.Run(t, addr, greeting+`
			C: EHLO client.test
			`+ehloAuth+`
			C: AUTH PLAIN `+authPlain("alice", "secret")+`
			S: 235 2.7.0 Authentication successful
			C: MAIL FROM:<alice@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<someone@elsewhere.test>
			S: 550 5.7.1 Relay access denied
		`)
	})
}

func TestSmuggling(t *testing.T) {
	// Each payload hides an end-of-data look-alike followed by a second
	// transaction; the real end comes after it.
	smuggled := `MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nForged`
	for _, fake := range []string{`\n.\n`, `\r\n.\n`, `\n.\r\n`, `\r.\r`, `\r\n.\r`, `\r.\r\n`} {
		t.Run(fmt.Sprintf("%q", fake), func(t *testing.T) {
			addr, spool, _ := start(t, nil)
			smtptest.Run(t, addr, hello+`
				C: MAIL FROM:<a@example.net>
				C: RCPT TO:<b@example.org>
				C: DATA
				S: 250 2.1.0 Ok
				S: 250 2.1.5 Ok
				S: 354 End data with <CR><LF>.<CR><LF>
				B: Subject: x\r\n\r\nbody`+fake+smuggled+`\r\n.\r\n
				S: 550 5.5.2 Bare CR or LF not allowed, use CRLF line endings
				C: QUIT
				S: 221 2.0.0 Bye
				EOF
			`)
			wantMessages(t, spool, 0)
		})
		t.Run(fmt.Sprintf("%q fixed", fake), func(t *testing.T) {
			addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.BareLineEndings = "fix" })
			smtptest.Run(t, addr, hello+`
				C: MAIL FROM:<a@example.net>
				C: RCPT TO:<b@example.org>
				C: DATA
				S: 250 2.1.0 Ok
				S: 250 2.1.5 Ok
				S: 354 End data with <CR><LF>.<CR><LF>
				B: Subject: x\r\n\r\nbody`+fake+smuggled+`\r\n.\r\n
				S: 250 2.0.0 Ok: queued as M0001
				C: QUIT
				S: 221 2.0.0 Bye
				EOF
			`)
			m := wantMessages(t, spool, 1)[0]
			if m.Envelope.Sender.Local != "a" || len(m.Envelope.Recipients) != 1 {
				t.Errorf("envelope %+v", m.Envelope)
			}
			if !bytes.Contains(m.Body, []byte("MAIL FROM:<evil@example.net>\r\n")) {
				t.Errorf("the smuggled commands are not in the body: %q", m.Body)
			}
		})
	}
}

func TestBareLineEndingsFix(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.BareLineEndings = "fix" })
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: DATA
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 354 End data with <CR><LF>.<CR><LF>
		B: Subject: x\n\nline one\rline two\r\n.\r\n
		S: 250 2.0.0 Ok: queued as M0001
	`)
	m := wantMessages(t, spool, 1)[0]
	if got, want := string(m.Body), "Subject: x\r\n\r\nline one\r\nline two\r\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

func TestSTARTTLS(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.TLS = serverTLS
		o.Auth = passwords(t)
	})
	c := smtptest.Dial(t, addr)
	c.TLS = clientTLS
	c.Run(greeting + "C: EHLO client.test\n" + ehloTLS + `
		C: AUTH PLAIN ` + authPlain("alice", "secret") + `
		S: 503 5.5.1 Issue STARTTLS first
		C: STARTTLS now
		S: 501 5.5.4 Syntax: STARTTLS
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: STARTTLS
		C: RCPT TO:<pipelined@example.org>
		C: NOOP
		S: 220 2.0.0 Ready to start TLS
		TLS
		C: MAIL FROM:<a@example.net>
		S: 503 5.5.1 Send EHLO/HELO first
		C: EHLO client.test
		` + ehloTLSAuth + `
		C: STARTTLS
		S: 503 5.5.1 TLS already active
		C: AUTH PLAIN ` + authPlain("alice", "secret") + `
		S: 235 2.7.0 Authentication successful
		C: EHLO client.test
		` + ehloTLSDone + `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	m := wantMessages(t, spool, 1)[0]
	if !m.Envelope.TLS || m.Envelope.AuthUser != "alice" {
		t.Errorf("envelope TLS %v AuthUser %q", m.Envelope.TLS, m.Envelope.AuthUser)
	}
	if !strings.Contains(string(m.Header), " with ESMTPSA id ") {
		t.Errorf("header %q: want ESMTPSA", m.Header)
	}
}

func TestSTARTTLSNotOffered(t *testing.T) {
	addr, _, _ := start(t, nil)
	smtptest.Run(t, addr, hello+`
		C: STARTTLS
		S: 502 5.5.1 STARTTLS not available
	`)
}

func TestSTARTTLSHandshakeFailure(t *testing.T) {
	serverTLS, _ := smtptest.TLSConfigs(t)
	addr, _, _ := start(t, func(o *smtp.Options) { o.TLS = serverTLS })
	smtptest.Run(t, addr, greeting+"C: EHLO client.test\n"+ehloTLS+`
		C: STARTTLS
		S: 220 2.0.0 Ready to start TLS
		C: this is not a TLS client hello
		EOF
	`)
}

func TestAUTH(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	opts := func(o *smtp.Options) {
		o.TLS = serverTLS
		o.Auth = passwords(t)
	}
	tlsHello := greeting + "C: EHLO client.test\n" + ehloTLS + `
		C: STARTTLS
		S: 220 2.0.0 Ready to start TLS
		TLS
		C: EHLO client.test
	` + ehloTLSAuth
	for _, tc := range []struct {
		name, script string
	}{
		{"plain initial response", `
			C: AUTH PLAIN ` + authPlain("alice", "secret") + `
			S: 235 2.7.0 Authentication successful
			C: AUTH PLAIN ` + authPlain("alice", "secret") + `
			S: 503 5.5.1 Already authenticated
		`},
		{"plain challenge", `
			C: AUTH plain
			S: 334
			C: ` + authPlain("alice", "secret") + `
			S: 235 2.7.0 Authentication successful
		`},
		{"plain authzid", `
			C: AUTH PLAIN ` + b64("alice\x00alice\x00secret") + `
			S: 235 2.7.0 Authentication successful
		`},
		{"plain other authzid", `
			C: AUTH PLAIN ` + b64("bob\x00alice\x00secret") + `
			S: 535 5.7.8 Authentication credentials invalid
		`},
		{"login", `
			C: AUTH LOGIN
			S: 334 VXNlcm5hbWU6
			C: ` + b64("alice") + `
			S: 334 UGFzc3dvcmQ6
			C: ` + b64("secret") + `
			S: 235 2.7.0 Authentication successful
		`},
		{"login initial response", `
			C: AUTH LOGIN ` + b64("alice") + `
			S: 334 UGFzc3dvcmQ6
			C: ` + b64("secret") + `
			S: 235 2.7.0 Authentication successful
		`},
		{"bad password", `
			C: AUTH PLAIN ` + authPlain("alice", "wrong") + `
			S: 535 5.7.8 Authentication credentials invalid
			C: AUTH LOGIN
			S: 334 VXNlcm5hbWU6
			C: ` + b64("mallory") + `
			S: 334 UGFzc3dvcmQ6
			C: ` + b64("secret") + `
			S: 535 5.7.8 Authentication credentials invalid
			C: AUTH PLAIN ` + authPlain("alice", "secret") + `
			S: 235 2.7.0 Authentication successful
		`},
		{"empty response", `
			C: AUTH PLAIN =
			S: 501 5.5.2 Cannot decode response
		`},
		{"cancel", `
			C: AUTH PLAIN
			S: 334
			C: *
			S: 501 5.0.0 Authentication cancelled
			C: AUTH LOGIN
			S: 334 VXNlcm5hbWU6
			C: ` + b64("alice") + `
			S: 334 UGFzc3dvcmQ6
			C: *
			S: 501 5.0.0 Authentication cancelled
		`},
		{"bad base64", `
			C: AUTH PLAIN !!!notbase64
			S: 501 5.5.2 Cannot decode response
			C: AUTH LOGIN
			S: 334 VXNlcm5hbWU6
			C: %%%
			S: 501 5.5.2 Cannot decode response
		`},
		{"unknown mechanism", `
			C: AUTH CRAM-MD5
			S: 504 5.5.4 Unrecognized authentication type
		`},
		{"during a transaction", `
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: AUTH PLAIN ` + authPlain("alice", "secret") + `
			S: 503 5.5.1 AUTH not allowed during a mail transaction
		`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _, _ := start(t, opts)
			c := smtptest.Dial(t, addr)
			c.TLS = clientTLS
			c.Run(tlsHello + tc.script + `
				C: NOOP
				S: 250 2.0.0 Ok
			`)
		})
	}
}

func TestAUTHNeedsEHLO(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Auth = passwords(t)
		o.Listener.AuthInsecure = true
	})
	smtptest.Run(t, addr, greeting+`
		C: AUTH PLAIN `+authPlain("alice", "secret")+`
		S: 503 5.5.1 Send EHLO first
		C: HELO client.test
		S: 250 mx.test
		C: AUTH PLAIN `+authPlain("alice", "secret")+`
		S: 503 5.5.1 Send EHLO first
	`)
}

func TestAUTHNotAvailable(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) { o.Listener.AuthInsecure = true })
	smtptest.Run(t, addr, hello+`
		C: AUTH PLAIN `+authPlain("alice", "secret")+`
		S: 502 5.5.1 AUTH not available
	`)
}

func TestAuthRequired(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Auth = passwords(t)
		o.Listener.AuthInsecure = true
		o.Listener.AuthRequired = true
	})
	smtptest.Run(t, addr, greeting+`
		C: EHLO client.test
		`+ehloAuth+`
		C: MAIL FROM:<a@example.net>
		S: 530 5.7.0 Authentication required
		C: AUTH PLAIN `+authPlain("alice", "secret")+`
		S: 235 2.7.0 Authentication successful
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
	`)
}

func TestConnectionLimitPerIP(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) { o.Listener.MaxConnectionsPerIP = 1 })
	first := smtptest.Dial(t, addr)
	first.Run(greeting)
	smtptest.Run(t, addr, `
		S: 421 4.7.0 mx.test Too many connections, try again later
		EOF
	`)
	first.Run(`
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	// The slot is freed once the server has seen the session end.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := smtptest.Dial(t, addr)
		line, err := c.ReadLine()
		c.Close()
		if err == nil && line == "220 mx.test ESMTP ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the first session ended: %q, %v", line, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectionLimitTotal(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) { o.Listener.MaxConnections = 2 })
	for range 2 {
		smtptest.Dial(t, addr).Run(greeting)
	}
	smtptest.Run(t, addr, `
		S: 421 4.7.0 mx.test Too many connections, try again later
		EOF
	`)
}

func TestErrorLimit(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) { o.Listener.MaxErrors = 3 })
	smtptest.Run(t, addr, greeting+`
		C: FOO
		C: NOOP
		C: BAR
		C: RCPT TO:<a@example.org>
		C: NOOP
		S: 500 5.5.1 Unrecognized command
		S: 250 2.0.0 Ok
		S: 500 5.5.1 Unrecognized command
		S: 503 5.5.1 Need MAIL command
		S: 421 4.7.0 mx.test Too many errors
		EOF
	`)
}

func TestCommandTimeout(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) { o.Listener.Timeouts.Command = 200 * time.Millisecond })
	t0 := time.Now()
	smtptest.Run(t, addr, hello+`
		S: 421 4.4.2 mx.test Timeout, closing connection
		EOF
	`)
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestDataTimeout(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.Timeouts.DataBlock = 200 * time.Millisecond })
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: DATA
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 354 End data with <CR><LF>.<CR><LF>
		C: partial line
		S: 421 4.4.2 mx.test Timeout, closing connection
		EOF
	`)
	wantMessages(t, spool, 0)
	if spool.Aborted() != 1 {
		t.Errorf("aborted %d drafts, want 1", spool.Aborted())
	}
}

// shutdown runs srv.Shutdown in the background.
func shutdown(srv *smtp.Server, timeout time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	return done
}

func TestShutdownIdle(t *testing.T) {
	addr, _, srv := start(t, nil)
	c := smtptest.Dial(t, addr)
	c.Run(hello)
	done := shutdown(srv, 5*time.Second)
	c.Run(`
		S: 421 4.3.2 mx.test Service shutting down
		EOF
	`)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("dial after Shutdown succeeded")
	}
}

func TestShutdownWaitsForData(t *testing.T) {
	addr, spool, srv := start(t, nil)
	c := smtptest.Dial(t, addr)
	c.Run(hello + `
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: DATA
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: in flight
		C:
	`)
	done := shutdown(srv, 10*time.Second)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v during DATA", err)
	case <-time.After(300 * time.Millisecond):
	}
	c.Run(`
		C: still here
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		S: 421 4.3.2 mx.test Service shutting down
		EOF
	`)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	m := wantMessages(t, spool, 1)[0]
	if got := string(m.Body); got != "Subject: in flight\r\n\r\nstill here\r\n" {
		t.Errorf("body %q", got)
	}
}

// TestShutdownLetsTransactionFinish: a session waiting for a command inside
// a mail transaction when Shutdown starts is not cut off; it may finish the
// message, then gets the 421 instead of its next command.
func TestShutdownLetsTransactionFinish(t *testing.T) {
	addr, spool, srv := start(t, nil)
	c := smtptest.Dial(t, addr)
	c.Run(hello + `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
	`)
	done := shutdown(srv, 10*time.Second)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a transaction was open", err)
	case <-time.After(300 * time.Millisecond):
	}
	c.Run(`
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: finished during shutdown
		C:
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: MAIL FROM:<a@example.net>
		S: 421 4.3.2 mx.test Service shutting down
		EOF
	`)
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wantMessages(t, spool, 1)
}

func TestShutdownDeadline(t *testing.T) {
	addr, spool, srv := start(t, nil)
	c := smtptest.Dial(t, addr)
	c.Run(hello + `
		C: MAIL FROM:<a@example.net>
		C: RCPT TO:<b@example.org>
		C: DATA
		S: 250 2.1.0 Ok
		S: 250 2.1.5 Ok
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: never finished
	`)
	if err := <-shutdown(srv, 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v, want context.DeadlineExceeded", err)
	}
	c.Run(`
		S: 421 4.3.2 mx.test Service shutting down
		EOF
	`)
	wantMessages(t, spool, 0)
}

func TestHookDefaults(t *testing.T) {
	mail := "C: MAIL FROM:<a@example.net>\nS: 250 2.1.0 Ok\n"
	rcpt := "C: RCPT TO:<b@example.org>\nS: 250 2.1.5 Ok\n"
	data := "C: DATA\nS: 354 End data with <CR><LF>.<CR><LF>\nC: x\nC: .\n"
	for _, tc := range []struct {
		name   string
		hooks  hook.Dispatcher
		script string
		spool  int
	}{
		{"connect reject", at(sdk.StageConnect, "", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			"S: 554 5.7.1 Rejected by policy\nEOF", 0},
		{"connect defer", at(sdk.StageConnect, "", sdk.DeferDecision(0, sdk.EnhancedCode{}, "")),
			"S: 421 4.7.0 Try again later\nEOF", 0},
		{"connect drop", at(sdk.StageConnect, "", sdk.DropDecision()),
			"S: 421 4.7.0 Closing connection\nEOF", 0},
		{"connect accept", at(sdk.StageConnect, "", sdk.AcceptDecision()),
			hello, 0},
		{"helo reject", at(sdk.StageHelo, "", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			greeting + "C: EHLO client.test\nS: 550 5.7.1 Rejected by policy\n" +
				"C: MAIL FROM:<a@example.net>\nS: 503 5.5.1 Send EHLO/HELO first", 0},
		{"helo defer", at(sdk.StageHelo, "", sdk.DeferDecision(0, sdk.EnhancedCode{}, "")),
			greeting + "C: HELO client.test\nS: 451 4.7.1 Try again later", 0},
		{"helo drop", at(sdk.StageHelo, "", sdk.DropDecision()),
			greeting + "C: EHLO client.test\nS: 421 4.7.0 Closing connection\nEOF", 0},
		{"mail reject", at(sdk.StageMail, "", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			hello + "C: MAIL FROM:<a@example.net>\nS: 550 5.7.1 Rejected by policy\n" +
				"C: RCPT TO:<b@example.org>\nS: 503 5.5.1 Need MAIL command", 0},
		{"mail defer", at(sdk.StageMail, "", sdk.DeferDecision(0, sdk.EnhancedCode{}, "")),
			hello + "C: MAIL FROM:<a@example.net>\nS: 451 4.7.1 Try again later", 0},
		{"mail drop blackholes the transaction", at(sdk.StageMail, "", sdk.DropDecision()),
			hello + mail + rcpt + "C: RCPT TO:<x@elsewhere.test>\nS: 250 2.1.5 Ok\n" + data +
				"S: 250 2.0.0 Ok: queued as *", 0},
		{"rcpt reject", at(sdk.StageRcpt, "", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + "C: RCPT TO:<b@example.org>\nS: 550 5.7.1 Rejected by policy", 0},
		{"rcpt reject custom", at(sdk.StageRcpt, "", sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "No such user")),
			hello + mail + "C: RCPT TO:<b@example.org>\nS: 550 5.1.1 No such user", 0},
		{"rcpt reject code only", at(sdk.StageRcpt, "", sdk.RejectDecision(553, sdk.EnhancedCode{}, "")),
			hello + mail + "C: RCPT TO:<b@example.org>\nS: 553 5.7.1 Rejected by policy", 0},
		{"rcpt reject disconnect", at(sdk.StageRcpt, "", sdk.Decision{Verdict: sdk.Reject, Disconnect: true}),
			hello + mail + "C: RCPT TO:<b@example.org>\nS: 550 5.7.1 Rejected by policy\nEOF", 0},
		{"rcpt defer", at(sdk.StageRcpt, "", sdk.DeferDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + "C: RCPT TO:<b@example.org>\nS: 451 4.7.1 Try again later", 0},
		{"rcpt drop", at(sdk.StageRcpt, "", sdk.DropDecision()),
			hello + mail + rcpt + data + "S: 250 2.0.0 Ok: queued as *", 0},
		{"command reject DATA", at(sdk.StageCommand, "DATA", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + rcpt + "C: DATA\nS: 554 5.7.1 Rejected by policy\nC: RSET\nS: 250 2.0.0 Ok", 0},
		{"command defer DATA", at(sdk.StageCommand, "DATA", sdk.DeferDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + rcpt + "C: DATA\nS: 451 4.7.1 Try again later", 0},
		{"command drop DATA", at(sdk.StageCommand, "DATA", sdk.DropDecision()),
			hello + mail + rcpt + data + "S: 250 2.0.0 Ok: queued as *", 0},
		{"command reject BDAT drains the chunk", at(sdk.StageCommand, "BDAT", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + rcpt + "B: BDAT 6 LAST\\r\\nQUIT\\r\\n\nS: 554 5.7.1 Rejected by policy\nC: NOOP\nS: 250 2.0.0 Ok", 0},
		{"command reject VRFY", at(sdk.StageCommand, "VRFY", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			greeting + "C: VRFY x\nS: 554 5.7.1 Rejected by policy", 0},
		{"command reject unknown verb", at(sdk.StageCommand, "XYZZY", sdk.RejectDecision(502, sdk.EnhancedCode{5, 5, 1}, "No magic")),
			greeting + "C: XYZZY\nS: 502 5.5.1 No magic", 0},
		{"command drop NOOP closes", at(sdk.StageCommand, "NOOP", sdk.DropDecision()),
			greeting + "C: NOOP\nS: 421 4.7.0 mx.test Closing connection\nEOF", 0},
		{"data reject", at(sdk.StageData, "", sdk.RejectDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + rcpt + data + "S: 554 5.7.1 Rejected by policy", 0},
		{"data defer", at(sdk.StageData, "", sdk.DeferDecision(0, sdk.EnhancedCode{}, "")),
			hello + mail + rcpt + data + "S: 451 4.7.1 Try again later", 0},
		{"data drop", at(sdk.StageData, "", sdk.DropDecision()),
			hello + mail + rcpt + data + "S: 250 2.0.0 Ok: queued as M0001", 0},
		{"data accept", at(sdk.StageData, "", sdk.AcceptDecision()),
			hello + mail + rcpt + data + "S: 250 2.0.0 Ok: queued as M0001", 1},
		{"invalid decision falls back to the stage default", at(sdk.StageRcpt, "", sdk.RejectDecision(450, sdk.EnhancedCode{}, "")),
			hello + mail + "C: RCPT TO:<b@example.org>\nS: 550 5.7.1 Rejected by policy", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool, _ := start(t, func(o *smtp.Options) { o.Hooks = tc.hooks })
			smtptest.Run(t, addr, tc.script)
			wantMessages(t, spool, tc.spool)
		})
	}
}

func TestRelayInvariant(t *testing.T) {
	external := func(req *hook.Request) bool {
		return req.Stage == sdk.StageRcpt && req.Rcpt.Address.Domain == "elsewhere.test"
	}
	t.Run("continue never widens relaying", func(t *testing.T) {
		addr, _, _ := start(t, func(o *smtp.Options) {
			o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
				return sdk.ContinueDecision().WithReason("no opinion"), sdk.Effects{}
			})
		})
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<x@elsewhere.test>
			S: 550 5.7.1 Relay access denied
		`)
	})
	t.Run("accept authorizes the recipient", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) {
			o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
				if external(req) && req.Rcpt.Address.Local == "partner" {
					return sdk.AcceptDecision(), sdk.Effects{}
				}
				return sdk.Decision{}, sdk.Effects{}
			})
		})
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<partner@elsewhere.test>
			S: 250 2.1.5 Ok
			C: RCPT TO:<other@elsewhere.test>
			S: 550 5.7.1 Relay access denied
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`)
		m := wantMessages(t, spool, 1)[0]
		if got := m.Envelope.Recipients; len(got) != 1 || got[0].Address.Local != "partner" {
			t.Errorf("recipients %v", got)
		}
	})
	t.Run("effects replace the recipient", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) {
			o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
				if req.Stage == sdk.StageRcpt && req.Rcpt.Address.Local == "list" {
					return sdk.Decision{}, sdk.Effects{Recipients: []sdk.Address{
						{Local: "m1", Domain: "example.org"}, {Local: "m2", Domain: "example.com"},
					}}
				}
				return sdk.Decision{}, sdk.Effects{}
			})
		})
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<list@example.org> NOTIFY=FAILURE ORCPT=rfc822;list@example.org
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`)
		want := []envelope.Recipient{
			{Address: envelope.Address{Local: "m1", Domain: "example.org"}, Notify: envelope.NotifyFailure, ORCPT: "rfc822;list@example.org"},
			{Address: envelope.Address{Local: "m2", Domain: "example.com"}, Notify: envelope.NotifyFailure, ORCPT: "rfc822;list@example.org"},
		}
		if diff := cmp.Diff(want, wantMessages(t, spool, 1)[0].Envelope.Recipients); diff != "" {
			t.Errorf("recipients (-want +got):\n%s", diff)
		}
	})
}

// TestHookSessionViews checks that the session a hook sees follows the
// connection (a second HELO) and that a view once handed out never
// changes: the session reuses it only while nothing in it changed.
func TestHookSessionViews(t *testing.T) {
	type seen struct {
		stage sdk.Stage
		view  *hook.Session
		at    hook.Session // the view as it was during the call
	}
	var mu sync.Mutex
	var got []seen
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			if req.Stage == sdk.StageMail || req.Stage == sdk.StageRcpt {
				mu.Lock()
				got = append(got, seen{req.Stage, req.Session, *req.Session})
				mu.Unlock()
			}
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: HELO other.test
		S: 250 mx.test
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d calls, want mail, rcpt, mail", len(got))
	}
	for i, want := range []struct {
		helo  string
		esmtp bool
	}{{"client.test", true}, {"client.test", true}, {"other.test", false}} {
		if g := got[i]; g.at.HELO != want.helo || g.at.ESMTP != want.esmtp || *g.view != g.at {
			t.Errorf("call %d (%s): session %+v, now %+v; want HELO %q, ESMTP %v, unchanged since", i, g.stage, g.at, *g.view, want.helo, want.esmtp)
		}
	}
	if got[0].view != got[1].view || got[1].view == got[2].view {
		t.Errorf("views %p %p %p: want the first two shared, the third new", got[0].view, got[1].view, got[2].view)
	}
}

func TestHookEffectsAndRequests(t *testing.T) {
	var mu sync.Mutex
	var seen []hook.Request
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			mu.Lock()
			r := *req
			s := *req.Session
			r.Session = &s
			seen = append(seen, r)
			mu.Unlock()
			switch req.Stage {
			case sdk.StageMail:
				return sdk.Decision{}, sdk.Effects{Sender: &sdk.Address{Local: "srs", Domain: "example.org"}}
			case sdk.StageData:
				return sdk.Decision{}, sdk.Effects{AddHeaders: []sdk.HeaderField{
					{Name: "X-Spam-Score", Value: "1.5"},
					{Name: "Bad Name", Value: "dropped"},
					{Name: "X-Folded", Value: "a\r\nb"},
				}}
			}
			return sdk.Decision{}, sdk.Effects{}
		})
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
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	m := wantMessages(t, spool, 1)[0]
	if got := m.Envelope.Sender.String(); got != "srs@example.org" {
		t.Errorf("sender %q, want the hook's rewrite", got)
	}
	h := string(m.Header)
	if !strings.HasPrefix(h, "Received: ") || !strings.HasSuffix(h, "\r\nX-Spam-Score: 1.5\r\nX-Folded: a  b\r\n") {
		t.Errorf("header block %q", h)
	}
	// The server shuts sessions down before the test reads seen.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		last := sdk.Stage("")
		if n > 0 {
			last = seen[n-1].Stage
		}
		mu.Unlock()
		if last == sdk.StageDisconnect || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	var stages []string
	for _, r := range seen {
		s := string(r.Stage)
		if r.Stage == sdk.StageCommand {
			s += ":" + r.Command
		}
		stages = append(stages, s)
	}
	want := []string{"connect", "command:EHLO", "helo", "command:MAIL", "mail", "command:RCPT", "rcpt",
		"command:DATA", "data", "command:QUIT", "disconnect"}
	if diff := cmp.Diff(want, stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
	for _, r := range seen {
		if r.Session.ClientIP != netip.MustParseAddr("127.0.0.1") || r.Session.Listener != "test" || r.Session.ID == "" {
			t.Errorf("%s: session %+v", r.Stage, r.Session)
		}
		if r.Stage == sdk.StageHelo && (r.Session.HELO != "client.test" || !r.Session.ESMTP) {
			t.Errorf("helo: session %+v", r.Session)
		}
	}
}

func TestAuthHook(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      sdk.Decision
		pass   string
		script string
	}{
		{"accept", sdk.AcceptDecision(), "wrong", "S: 235 2.7.0 Authentication successful"},
		{"reject", sdk.RejectDecision(0, sdk.EnhancedCode{}, ""), "secret", "S: 535 5.7.8 Authentication credentials invalid"},
		{"defer", sdk.DeferDecision(0, sdk.EnhancedCode{}, ""), "secret", "S: 454 4.7.0 Temporary authentication failure"},
		{"continue asks the authenticator", sdk.Decision{}, "secret", "S: 235 2.7.0 Authentication successful"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gotUser, gotArg string
			var mu sync.Mutex
			addr, _, _ := start(t, func(o *smtp.Options) {
				o.Auth = passwords(t)
				o.Listener.AuthInsecure = true
				o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
					switch req.Stage {
					case sdk.StageAuth:
						mu.Lock()
						gotUser, gotArg = req.Session.AuthUser, req.Arg
						mu.Unlock()
						return tc.d, sdk.Effects{}
					case sdk.StageCommand:
						if req.Command == "AUTH" && req.Arg != "PLAIN" {
							panic("the command hook saw AUTH credentials: " + req.Arg)
						}
					}
					return sdk.Decision{}, sdk.Effects{}
				})
			})
			smtptest.Run(t, addr, greeting+"C: EHLO client.test\n"+ehloAuth+
				"C: AUTH PLAIN "+authPlain("alice", tc.pass)+"\n"+tc.script)
			mu.Lock()
			defer mu.Unlock()
			if gotUser != "alice" || gotArg != "PLAIN" {
				t.Errorf("auth hook saw user %q, mechanism %q", gotUser, gotArg)
			}
		})
	}
}

func TestSpoolFailures(t *testing.T) {
	body := "C: MAIL FROM:<a@example.net>\nS: 250 2.1.0 Ok\nC: RCPT TO:<b@example.org>\nS: 250 2.1.5 Ok\n"
	for _, tc := range []struct {
		name   string
		spool  *smtptest.MemorySpool
		script string
	}{
		{"create", &smtptest.MemorySpool{CreateErr: errors.New("disk gone")},
			"C: DATA\nS: 451 4.3.0 Local error in processing\n" +
				"B: BDAT 3 LAST\\r\\nabc\nS: 451 4.3.0 Local error in processing"},
		{"write", &smtptest.MemorySpool{WriteErr: errors.New("disk full")},
			"C: DATA\nS: 354 End data with <CR><LF>.<CR><LF>\nC: x\nC: .\nS: 451 4.3.0 Local error in processing\n" +
				"C: MAIL FROM:<a@example.net>\nS: 250 2.1.0 Ok\nC: RCPT TO:<b@example.org>\nS: 250 2.1.5 Ok\n" +
				"B: BDAT 3 LAST\\r\\nabc\nS: 451 4.3.0 Local error in processing"},
		{"commit", &smtptest.MemorySpool{CommitErr: errors.New("fsync failed")},
			"C: DATA\nS: 354 End data with <CR><LF>.<CR><LF>\nC: x\nC: .\nS: 451 4.3.0 Local error in processing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _, _ := start(t, func(o *smtp.Options) { o.Spool = tc.spool })
			smtptest.Run(t, addr, hello+body+tc.script+"\nC: NOOP\nS: 250 2.0.0 Ok")
			wantMessages(t, tc.spool, 0)
		})
	}
}

// panicSpool panics in Create.
type panicSpool struct{}

func (panicSpool) Create(ctx context.Context) (smtp.Draft, error) { panic("spool bug") }

func TestSessionPanicIsContained(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) { o.Spool = panicSpool{} })
	script := hello + `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		EOF
	`
	smtptest.Run(t, addr, script)
	smtptest.Run(t, addr, script) // the server goes on
}

func TestSessionIDsUnique(t *testing.T) {
	var mu sync.Mutex
	ids := map[string]bool{}
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			if req.Stage == sdk.StageConnect {
				mu.Lock()
				ids[req.Session.ID] = true
				mu.Unlock()
			}
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	for range 5 {
		smtptest.Run(t, addr, greeting+"C: QUIT\nS: 221 2.0.0 Bye")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 5 {
		t.Errorf("%d distinct session IDs for 5 sessions: %v", len(ids), ids)
	}
}

func TestNewServerChecksOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*smtp.Options)
	}{
		{"no hostname", func(o *smtp.Options) { o.Hostname = "" }},
		{"no spool", func(o *smtp.Options) { o.Spool = nil }},
		{"bad bare line policy", func(o *smtp.Options) { o.Listener.BareLineEndings = "ignore" }},
		{"short lines", func(o *smtp.Options) { o.Listener.MaxLineLength = 100 }},
		{"postmaster without domain", func(o *smtp.Options) { o.Postmaster = envelope.Address{Local: "postmaster"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := baseOptions()
			opt.Spool = &smtptest.MemorySpool{}
			tc.mod(&opt)
			if _, err := smtp.NewServer(opt); err == nil {
				t.Errorf("NewServer succeeded")
			}
		})
	}
}

func TestPasswordTable(t *testing.T) {
	pt := passwords(t)
	ctx := context.Background()
	for _, tc := range []struct {
		user, pass string
		want       bool
	}{
		{"alice", "secret", true},
		{"alice", "Secret", false},
		{"alice", "", false},
		{"bob", "secret", false},
		{"", "", false},
	} {
		got, err := pt.Authenticate(ctx, tc.user, tc.pass)
		if err != nil || got != tc.want {
			t.Errorf("Authenticate(%q, %q) = %v, %v; want %v", tc.user, tc.pass, got, err, tc.want)
		}
	}
	bad := smtp.NewPasswordTable(map[string]string{"carol": "not a hash"})
	if ok, err := bad.Authenticate(ctx, "carol", "x"); ok || err == nil {
		t.Errorf("bad hash: %v, %v; want an error", ok, err)
	}
}

func BenchmarkSession(b *testing.B) { benchSession(b, nil) }

// BenchmarkSessionHooked is BenchmarkSession with a Go handler that
// accepts at rcpt and continues at data, under a timeout as configured
// hooks run: what the hook call path (the session's dispatch, the chain,
// the decision's reply) adds to a message, without any handler's work.
func BenchmarkSessionHooked(b *testing.B) {
	h := hooktest.Func{HandlerName: "go.accept", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
		if r.Stage == sdk.StageRcpt {
			return sdk.AcceptDecision(), sdk.Effects{}, nil
		}
		return sdk.Decision{}, sdk.Effects{}, nil
	}}
	benchSession(b, hook.NewChain(nil, hook.Entry{Handler: h, Timeout: time.Second,
		Stages: []sdk.Stage{sdk.StageRcpt, sdk.StageData}}))
}

func benchSession(b *testing.B, hooks hook.Dispatcher) {
	spool := &smtptest.DiscardSpool{}
	opt := baseOptions()
	opt.Hooks = hooks
	opt.Spool = spool
	opt.Listener.MaxMessageSize = 1 << 20
	opt.Log = slog.New(slog.DiscardHandler)
	addr, _ := smtptest.StartServer(b, opt)

	line := strings.Repeat("z", 62) + "\r\n" // 64 bytes
	body := "Subject: bench\r\n\r\n" + strings.Repeat(line, (2048-18)/64) + ".\r\n"
	envelopeCmds := "MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"

	c := smtptest.Dial(b, addr)
	c.Run(greeting + "C: EHLO bench.test\n" + strings.NewReplacer("client.test", "bench.test", "SIZE 10240", "SIZE 1048576").Replace(ehlo) + "\n")
	conn := c.NetConn()
	br := bufio.NewReader(conn)
	readN := func(n int) {
		for range n {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line[0] != '2' && line[0] != '3' {
				b.Fatalf("reply %q", line)
			}
		}
	}
	// The end of a message and the next envelope go in one write.
	bodyAndNext := []byte(body + envelopeCmds)
	lastBody := []byte(body)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	conn.Write([]byte(envelopeCmds))
	readN(3)
	for i := range b.N {
		next := bodyAndNext
		if i == b.N-1 {
			next = lastBody
		}
		if _, err := conn.Write(next); err != nil {
			b.Fatal(err)
		}
		if i < b.N-1 {
			readN(4)
		} else {
			readN(1)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if n, _ := spool.Committed(); n != int64(b.N) {
		b.Fatalf("%d messages committed, want %d", n, b.N)
	}
}

// ehloETRN is the EHLO reply of the base server with ETRN offered.
const ehloETRN = ehloFront + "S: 250-DSN\nS: 250 ETRN\n"

// etrnQueue is an Options.ETRN that answers n messages (or err) and
// records the domains it is asked for.
type etrnQueue struct {
	n   int
	err error

	mu      sync.Mutex
	domains []string
}

func (q *etrnQueue) ETRN(ctx context.Context, domain string) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.domains = append(q.domains, domain)
	return q.n, q.err
}

func (q *etrnQueue) asked() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.domains)
}

func TestETRN(t *testing.T) {
	// startETRN runs a server whose ETRN is q; the test client (loopback)
	// is in the relay networks when relay is set.
	startETRN := func(t *testing.T, q *etrnQueue, relay bool, mod func(*smtp.Options)) string {
		addr, _, _ := start(t, func(o *smtp.Options) {
			o.ETRN = q.ETRN
			if relay {
				o.RelayNetworks = append(o.RelayNetworks, smtptest.Loopback())
			}
			if mod != nil {
				mod(o)
			}
		})
		return addr
	}
	const helloETRN = greeting + "C: EHLO client.test\n" + ehloETRN

	t.Run("not offered without Options.ETRN", func(t *testing.T) {
		addr, _, _ := start(t, func(o *smtp.Options) {
			o.RelayNetworks = append(o.RelayNetworks, smtptest.Loopback())
		})
		smtptest.Run(t, addr, hello+`
			C: ETRN example.org
			S: 502 5.5.1 ETRN not available
		`)
	})
	t.Run("pending messages from the relay network", func(t *testing.T) {
		q := &etrnQueue{n: 3}
		addr := startETRN(t, q, true, nil)
		smtptest.Run(t, addr, helloETRN+`
			C: ETRN Example.ORG.
			S: 253 2.0.0 OK, 3 pending messages for node example.org started
			C: ETRN @sub.example.org
			S: 253 2.0.0 OK, 3 pending messages for node sub.example.org started
		`)
		if diff := cmp.Diff([]string{"example.org", "sub.example.org"}, q.asked()); diff != "" {
			t.Errorf("ETRN domains (-want +got):\n%s", diff)
		}
	})
	t.Run("no messages waiting", func(t *testing.T) {
		q := &etrnQueue{}
		addr := startETRN(t, q, true, nil)
		smtptest.Run(t, addr, helloETRN+`
			C: ETRN example.org
			S: 251 2.0.0 OK, no messages waiting for node example.org
		`)
	})
	t.Run("queue error", func(t *testing.T) {
		q := &etrnQueue{err: errors.New("queue closed")}
		addr := startETRN(t, q, true, nil)
		smtptest.Run(t, addr, helloETRN+`
			C: ETRN example.org
			S: 458 4.3.0 Unable to queue messages for node example.org
			C: NOOP
			S: 250 2.0.0 Ok
		`)
	})
	t.Run("denied outside the relay networks", func(t *testing.T) {
		q := &etrnQueue{n: 1}
		addr := startETRN(t, q, false, nil)
		smtptest.Run(t, addr, helloETRN+`
			C: ETRN example.org
			S: 459 4.7.1 Node example.org not allowed
		`)
		if got := q.asked(); len(got) != 0 {
			t.Errorf("ETRN called for %q, want no call", got)
		}
	})
	t.Run("allowed when authenticated", func(t *testing.T) {
		q := &etrnQueue{n: 2}
		addr := startETRN(t, q, false, func(o *smtp.Options) {
			o.Auth = passwords(t)
			o.Listener.AuthInsecure = true
		})
		smtptest.Run(t, addr, greeting+`
			C: EHLO client.test
			S: 250-mx.test Hello client.test
			S~ 250-.*
			S~ 250-.*
			S~ 250-.*
			S~ 250-.*
			S~ 250-.*
			S~ 250-.*
			S~ 250-.*
			S: 250-DSN
			S: 250-ETRN
			S: 250 AUTH PLAIN LOGIN
			C: ETRN example.org
			S: 459 4.7.1 Node example.org not allowed
			C: AUTH PLAIN `+authPlain("alice", "secret")+`
			S: 235 2.7.0 Authentication successful
			C: ETRN example.org
			S: 253 2.0.0 OK, 2 pending messages for node example.org started
		`)
		if diff := cmp.Diff([]string{"example.org"}, q.asked()); diff != "" {
			t.Errorf("ETRN domains (-want +got):\n%s", diff)
		}
	})
	t.Run("sequence and syntax", func(t *testing.T) {
		q := &etrnQueue{n: 1}
		addr := startETRN(t, q, true, nil)
		smtptest.Run(t, addr, greeting+`
			C: ETRN example.org
			S: 503 5.5.1 Send EHLO/HELO first
			C: EHLO client.test
			`+ehloETRN+`
			C: ETRN
			S: 501 5.5.4 Syntax: ETRN domain
			C: ETRN @
			S: 501 5.5.4 Syntax: ETRN domain
			C: ETRN exa_mple.org
			S: 501 5.5.4 Syntax: ETRN domain
			C: ETRN [192.0.2.1]
			S: 501 5.5.4 Syntax: ETRN domain
			C: ETRN #queue
			S: 458 4.5.4 Queue names are not supported
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: ETRN example.org
			S: 503 5.5.1 ETRN not allowed during a mail transaction
			C: RSET
			S: 250 2.0.0 Ok
			C: ETRN example.org
			S: 253 2.0.0 OK, 1 pending messages for node example.org started
		`)
		if diff := cmp.Diff([]string{"example.org"}, q.asked()); diff != "" {
			t.Errorf("ETRN domains (-want +got):\n%s", diff)
		}
	})
	t.Run("command hook runs first", func(t *testing.T) {
		q := &etrnQueue{n: 1}
		addr := startETRN(t, q, true, func(o *smtp.Options) {
			o.Hooks = at(sdk.StageCommand, "ETRN", sdk.Decision{Verdict: sdk.Reject})
		})
		smtptest.Run(t, addr, helloETRN+`
			C: ETRN example.org
			S: 554 5.7.1 Rejected by policy
		`)
		if got := q.asked(); len(got) != 0 {
			t.Errorf("ETRN called for %q after the command hook rejected it", got)
		}
	})
}

// senderDomains is an Options.VerifySender over fixed answers: a domain
// not listed does not exist; "broken.test" fails to resolve.
type senderDomains struct {
	mu    sync.Mutex
	asked []string
}

func (v *senderDomains) verify(ctx context.Context, domain string) (bool, error) {
	v.mu.Lock()
	v.asked = append(v.asked, domain)
	v.mu.Unlock()
	switch domain {
	case "example.net":
		return true, nil
	case "broken.test":
		return false, errors.New("SERVFAIL")
	}
	return false, nil
}

func (v *senderDomains) domains() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.asked)
}

func TestVerifySenderDomain(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		v := &senderDomains{}
		var mu sync.Mutex
		var mailHook []string // senders the mail hook saw
		addr, spool, _ := start(t, func(o *smtp.Options) {
			o.Listener.VerifySenderDomain = true
			o.VerifySender = v.verify
			o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
				if req.Stage == sdk.StageMail {
					mu.Lock()
					mailHook = append(mailHook, req.Envelope.Sender.String())
					mu.Unlock()
				}
				return sdk.Decision{}, sdk.Effects{}
			})
		})
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@nowhere.test>
			S: 550 5.1.8 Sender address rejected: Domain not found
			C: MAIL FROM:<a@broken.test>
			S: 450 4.1.8 Sender address rejected: Domain lookup failed
			C: MAIL FROM:<a@Example.NET>
			S: 250 2.1.0 Ok
			C: RSET
			S: 250 2.0.0 Ok
			C: MAIL FROM:<>
			S: 250 2.1.0 Ok
			C: RSET
			S: 250 2.0.0 Ok
			C: MAIL FROM:<a@[192.0.2.1]>
			S: 250 2.1.0 Ok
			C: RCPT TO:<b@example.org>
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: x
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`)
		wantMessages(t, spool, 1)
		if diff := cmp.Diff([]string{"nowhere.test", "broken.test", "example.net"}, v.domains()); diff != "" {
			t.Errorf("domains looked up (-want +got):\n%s", diff)
		}
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]string{"a@Example.NET", "", "a@[192.0.2.1]"}, mailHook); diff != "" {
			t.Errorf("senders the mail hook saw (-want +got):\n%s", diff)
		}
	})
	t.Run("off: not consulted", func(t *testing.T) {
		v := &senderDomains{}
		addr, _, _ := start(t, func(o *smtp.Options) { o.VerifySender = v.verify })
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@nowhere.test>
			S: 250 2.1.0 Ok
		`)
		if got := v.domains(); len(got) != 0 {
			t.Errorf("VerifySender called for %q with verify_sender_domain off", got)
		}
	})
	t.Run("on without Options.VerifySender", func(t *testing.T) {
		addr, _, _ := start(t, func(o *smtp.Options) { o.Listener.VerifySenderDomain = true })
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@nowhere.test>
			S: 250 2.1.0 Ok
		`)
	})
}

// receivedLines is n Received header lines as transcript C: lines.
func receivedLines(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "C: Received: from hop%d.example.net by hop%d.example.net; Mon, 1 Jan 2024 00:00:00 +0000\n", i, i+1)
	}
	return b.String()
}

func TestMaxHops(t *testing.T) {
	const mailFrom = `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
	`
	t.Run("50 Received fields accepted", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.MaxHeaderSize = 0 })
		smtptest.Run(t, addr, hello+mailFrom+receivedLines(50)+`
			C: Subject: x
			C:
			C: body
			C: .
			S: 250 2.0.0 Ok: queued as M0001
		`)
		wantMessages(t, spool, 1)
	})
	t.Run("51 rejected, nothing spooled", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.MaxHeaderSize = 0 })
		smtptest.Run(t, addr, hello+mailFrom+receivedLines(51)+`
			C: Subject: x
			C:
			C: body
			C: .
			S: 554 5.4.6 Too many hops (mail loop detected)
			C: RCPT TO:<b@example.org>
			S: 503 5.5.1 Need MAIL command
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
		`)
		wantMessages(t, spool, 0)
		if got := spool.Aborted(); got != 1 {
			t.Errorf("aborted drafts: got %d, want 1", got)
		}
	})
	t.Run("field names", func(t *testing.T) {
		// With max_hops 2, three fields are a loop; look-alikes are not
		// fields and do not count.
		tests := []struct {
			name  string
			lines string
			want  string
		}{
			{"any case, obsolete blank before the colon", `
				C: received: a
				C: RECEIVED : b
				C: Received:c
			`, "S: 554 5.4.6 Too many hops (mail loop detected)"},
			{"look-alikes", `
				C: Received: a
				C: X-Received: b
				C: Received-SPF: pass
				C: Subject: Received: c
				C:  Received: folded into Subject
				C: Receive: d
				C: Received: e
			`, "S: 250 2.0.0 Ok: queued as M0001"},
			{"not in the body", `
				C: Received: a
				C: Received: b
				C:
				C: Received: c
				C: Received: d
			`, "S: 250 2.0.0 Ok: queued as M0001"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.MaxHops = 2 })
				smtptest.Run(t, addr, hello+mailFrom+tt.lines+`
					C: .
					`+tt.want+`
				`)
				n := 0
				if strings.HasPrefix(tt.want, "S: 250") {
					n = 1
				}
				wantMessages(t, spool, n)
			})
		}
	})
	t.Run("BDAT: a field split across chunks counts", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.MaxHops = 1 })
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<b@example.org>
			S: 250 2.1.5 Ok
			B: BDAT 17\r\nReceived: a\r\nRece
			S: 250 2.0.0 17 octets received
			B: BDAT 17 LAST\r\niVED: b\r\n\r\nbody\r\n
			S: 554 5.4.6 Too many hops (mail loop detected)
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
		`)
		wantMessages(t, spool, 0)
		if got := spool.Aborted(); got != 1 {
			t.Errorf("aborted drafts: got %d, want 1", got)
		}
	})
	t.Run("BDAT: a Received line in the body does not count", func(t *testing.T) {
		addr, spool, _ := start(t, func(o *smtp.Options) { o.Listener.MaxHops = 1 })
		smtptest.Run(t, addr, hello+`
			C: MAIL FROM:<a@example.net>
			S: 250 2.1.0 Ok
			C: RCPT TO:<b@example.org>
			S: 250 2.1.5 Ok
			B: BDAT 15\r\nReceived: a\r\n\r\n
			S: 250 2.0.0 15 octets received
			B: BDAT 13 LAST\r\nReceived: b\r\n
			S: 250 2.0.0 Ok: queued as M0001
		`)
		wantMessages(t, spool, 1)
	})
}
