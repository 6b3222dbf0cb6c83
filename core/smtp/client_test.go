package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// fakeServer plays one side of a transcript on 127.0.0.1:0. Lines starting
// "S: " are sent (with CRLF), "C: " lines must arrive exactly (with CRLF),
// "D: " is a Go-quoted string whose bytes must arrive exactly (a BDAT chunk),
// "S: <starttls>" runs the TLS handshake, "S: <close>" hangs up and ends
// the script. After the script it expects the client to close without
// sending anything more. Problems are reported with t.Errorf (never
// t.Fatal: this runs in its own goroutine); wait on the returned channel
// before the test ends.
func fakeServer(t *testing.T, script string, tlsCfg *tls.Config) (addr string, done <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			t.Errorf("fake server: accept: %v", err)
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fc := &fakeConn{conn: conn}
		br := bufio.NewReader(fc)
		for n, step := range strings.Split(strings.TrimSpace(script), "\n") {
			step = strings.TrimSpace(step)
			switch {
			case step == "S: <close>":
				return // the deferred Close hangs up
			case step == "S: <starttls>":
				tc := tls.Server(conn, tlsCfg)
				if err := tc.Handshake(); err != nil {
					t.Errorf("fake server: step %d: TLS handshake: %v", n+1, err)
					return
				}
				fc.conn = tc
			case strings.HasPrefix(step, "S: "):
				out := strings.ReplaceAll(step[3:], `\r\n`, "\r\n") + "\r\n"
				if _, err := io.WriteString(fc.conn, out); err != nil {
					t.Errorf("fake server: step %d: write: %v", n+1, err)
					return
				}
			case strings.HasPrefix(step, "D: "):
				want, err := strconv.Unquote(step[3:])
				if err != nil {
					t.Errorf("fake server: step %d: %v", n+1, err)
					return
				}
				got := make([]byte, len(want))
				if k, err := io.ReadFull(br, got); string(got[:k]) != want {
					t.Errorf("fake server: step %d: got %q (err %v), want %q", n+1, got[:k], err, want)
					return
				}
			case strings.HasPrefix(step, "C: ") || step == "C:":
				want := strings.TrimPrefix(strings.TrimPrefix(step, "C:"), " ") + "\r\n"
				got, err := br.ReadString('\n')
				if got != want {
					t.Errorf("fake server: step %d: got %q (err %v), want %q", n+1, got, err, want)
					return
				}
			default:
				t.Errorf("fake server: bad script line %q", step)
				return
			}
		}
		rest, _ := io.ReadAll(br)
		if len(rest) > 0 {
			t.Errorf("fake server: unexpected data after the script: %q", rest)
		}
	}()
	return ln.Addr().String(), ch
}

type fakeConn struct{ conn net.Conn }

func (f *fakeConn) Read(p []byte) (int, error) { return f.conn.Read(p) }

func testOptions() ClientOptions {
	return ClientOptions{LocalName: "client.test", Timeout: 3 * time.Second}
}

func dialFake(t *testing.T, addr string, opt ClientOptions) *Client {
	t.Helper()
	c, err := Dial(context.Background(), addr, opt)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}

func env(from string, to ...string) *envelope.Envelope {
	split := func(s string) envelope.Address {
		l, d, _ := strings.Cut(s, "@")
		return envelope.Address{Local: l, Domain: d}
	}
	e := &envelope.Envelope{Sender: split(from)}
	for _, t := range to {
		e.Recipients = append(e.Recipients, envelope.Recipient{Address: split(t)})
	}
	return e
}

const ehloFull = `
S: 220 mx.test ESMTP fake
C: EHLO client.test
S: 250-mx.test greets client.test
S: 250-PIPELINING
S: 250-SIZE 10240000
S: 250-8BITMIME
S: 250-ENHANCEDSTATUSCODES
S: 250-DSN
S: 250-SMTPUTF8
S: 250 AUTH PLAIN LOGIN`

func TestClientEHLO(t *testing.T) {
	addr, done := fakeServer(t, ehloFull+`
C: QUIT
S: 221 2.0.0 Bye`, nil)
	c := dialFake(t, addr, testOptions())
	if err := c.Hello(context.Background()); err != nil {
		t.Fatalf("Hello: %v", err)
	}
	for _, tc := range []struct {
		name, param string
		ok          bool
	}{
		{"PIPELINING", "", true},
		{"size", "10240000", true},
		{"Auth", "PLAIN LOGIN", true},
		{"STARTTLS", "", false},
		{"mx.test", "", false},
	} {
		param, ok := c.Extension(tc.name)
		if param != tc.param || ok != tc.ok {
			t.Errorf("Extension(%q) = %q, %v; want %q, %v", tc.name, param, ok, tc.param, tc.ok)
		}
	}
	if got := c.MaxSize(); got != 10240000 {
		t.Errorf("MaxSize() = %d, want 10240000", got)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

func TestClientHELOFallback(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 old.test SMTP
C: EHLO client.test
S: 502 command not implemented
C: HELO client.test
S: 250 old.test
C: MAIL FROM:<a@x.test>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: DATA
S: 354 go ahead
C: hello
C: .
S: 250 ok
C: QUIT
S: 221 bye`, nil)
	c := dialFake(t, addr, testOptions())
	// Send says hello by itself; the 8BITMIME body parameter is left out
	// because HELO offers no extensions.
	e := env("a@x.test", "b@y.test")
	e.Body = envelope.Body8BitMIME
	res, err := c.Send(context.Background(), e, strings.NewReader("hello"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if _, ok := c.Extension("8BITMIME"); ok {
		t.Errorf("extension 8BITMIME after HELO")
	}
	if res.Data.Code != 250 || res.ID != "" {
		t.Errorf("Data = %v, ID %q; want 250 and no ID", res.Data, res.ID)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientSendPipelined checks the exact bytes of a pipelined transaction:
// MAIL, both RCPTs and DATA before any reply (the server script answers only
// after reading all four), parameters, CRLF normalisation and dot-stuffing.
func TestClientSendPipelined(t *testing.T) {
	addr, done := fakeServer(t, ehloFull+`
C: MAIL FROM:<a@x.test> SIZE=31 BODY=8BITMIME RET=HDRS ENVID=abc+2Bd
C: RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.test
C: RCPT TO:<c@y.test> NOTIFY=NEVER
C: DATA
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
S: 250 2.1.5 Recipient ok
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: t
C:
C: ..
C: ..leading dot
C: bare cr
C: end
C: .
S: 250 2.0.0 Ok: queued as 4Xy7Z
C: QUIT
S: 221 2.0.0 Bye`, nil)
	c := dialFake(t, addr, testOptions())
	e := env("a@x.test", "b@y.test", "c@y.test")
	e.Size = 31
	e.Body = envelope.Body8BitMIME
	e.Ret = envelope.RetHdrs
	e.EnvID = "abc+2Bd"
	e.Recipients[0].Notify = envelope.NotifySuccess | envelope.NotifyFailure
	e.Recipients[0].ORCPT = "rfc822;b@y.test"
	e.Recipients[1].Notify = envelope.NotifyNever
	body := "Subject: t\n\n.\r\n.leading dot\nbare cr\rend"
	res, err := c.Send(context.Background(), e, strings.NewReader(body))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := Result{
		Mail: R(250, sdk.EnhancedCode{2, 1, 0}, "Sender ok"),
		Rcpts: []Reply{
			R(250, sdk.EnhancedCode{2, 1, 5}, "Recipient ok"),
			R(250, sdk.EnhancedCode{2, 1, 5}, "Recipient ok"),
		},
		Data: R(250, sdk.EnhancedCode{2, 0, 0}, "Ok: queued as 4Xy7Z"),
		ID:   "4Xy7Z",
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("Send result:\n got %+v\nwant %+v", res, want)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

func TestClientSendStepByStep(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test ESMTP
C: EHLO client.test
S: 250-mx.test
S: 250 SIZE
C: MAIL FROM:<> SIZE=5
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: DATA
S: 354 go
C: abc
C: .
S: 250 queued as ABC
C: MAIL FROM:<> SIZE=2
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: DATA
S: 354 go
C:
C: .
S: 250 ok`, nil)
	// PIPELINING is offered in neither case here; NoPipelining is tested
	// through the same path by TestClientNoPipeliningOption.
	c := dialFake(t, addr, testOptions())
	e := env("", "b@y.test")
	res, err := c.Send(context.Background(), e, bytes.NewReader([]byte("abc\r\n")))
	if err != nil || res.ID != "ABC" {
		t.Errorf("first Send: ID %q, err %v; want ABC, nil", res.ID, err)
	}
	// SIZE comes from the reader's Len when env.Size is 0; "\r\n" stays
	// one empty line.
	if _, err := c.Send(context.Background(), e, strings.NewReader("\r\n")); err != nil {
		t.Errorf("second Send: %v", err)
	}
	c.Close()
	<-done
}

func TestClientNoPipeliningOption(t *testing.T) {
	addr, done := fakeServer(t, ehloFull+`
C: MAIL FROM:<a@x.test>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: DATA
S: 354 go
C: x
C: .
S: 250 ok`, nil)
	opt := testOptions()
	opt.NoPipelining = true
	c := dialFake(t, addr, opt)
	if _, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), io.MultiReader(strings.NewReader("x"))); err != nil {
		t.Errorf("Send: %v", err)
	}
	c.Close()
	<-done
}

func TestClientRcptPartialFailure(t *testing.T) {
	for _, pipelining := range []bool{true, false} {
		name := "step"
		script := `
S: 220 mx.test
C: EHLO client.test
S: 250 mx.test
C: MAIL FROM:<a@x.test>
S: 250 2.1.0 ok
C: RCPT TO:<b@y.test>
S: 550 5.1.1 No such user
C: RCPT TO:<c@y.test>
S: 250 2.1.5 ok
C: DATA
S: 354 go
C: hi
C: .
S: 250 2.0.0 ok`
		if pipelining {
			name = "pipelined"
			script = `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 PIPELINING
C: MAIL FROM:<a@x.test>
C: RCPT TO:<b@y.test>
C: RCPT TO:<c@y.test>
C: DATA
S: 250 2.1.0 ok
S: 550 5.1.1 No such user
S: 250 2.1.5 ok
S: 354 go
C: hi
C: .
S: 250 2.0.0 ok`
		}
		t.Run(name, func(t *testing.T) {
			addr, done := fakeServer(t, script, nil)
			c := dialFake(t, addr, testOptions())
			defer func() { c.Close(); <-done }()
			res, err := c.Send(context.Background(), env("a@x.test", "b@y.test", "c@y.test"), strings.NewReader("hi\n"))
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			wantRcpts := []Reply{R(550, sdk.EnhancedCode{5, 1, 1}, "No such user"), R(250, sdk.EnhancedCode{2, 1, 5}, "ok")}
			if !reflect.DeepEqual(res.Rcpts, wantRcpts) {
				t.Errorf("Rcpts = %v, want %v", res.Rcpts, wantRcpts)
			}
			if !res.Rcpts[0].Permanent() || res.Data.Code != 250 {
				t.Errorf("rcpt 0 permanent %v, data %v", res.Rcpts[0].Permanent(), res.Data)
			}
		})
	}
}

func TestClientAllRcptsRefused(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"step", `
S: 220 mx.test
C: EHLO client.test
S: 250 mx.test
C: MAIL FROM:<a@x.test>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 450 4.2.0 Mailbox busy
C: RSET
S: 250 ok`},
		{"pipelined DATA refused", `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 PIPELINING
C: MAIL FROM:<a@x.test>
C: RCPT TO:<b@y.test>
C: DATA
S: 250 ok
S: 450 4.2.0 Mailbox busy
S: 554 5.5.1 No valid recipients
C: RSET
S: 250 ok`},
		{"pipelined DATA accepted anyway", `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 PIPELINING
C: MAIL FROM:<a@x.test>
C: RCPT TO:<b@y.test>
C: DATA
S: 250 ok
S: 450 4.2.0 Mailbox busy
S: 354 go ahead
C: .
S: 554 5.5.1 No valid recipients
C: RSET
S: 250 ok`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := fakeServer(t, tc.script, nil)
			c := dialFake(t, addr, testOptions())
			defer func() { c.Close(); <-done }()
			res, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("never sent\n"))
			if err != nil {
				t.Fatalf("Send: %v, want nil (the refusal is per recipient)", err)
			}
			if want := R(450, sdk.EnhancedCode{4, 2, 0}, "Mailbox busy"); !reflect.DeepEqual(res.Rcpts, []Reply{want}) {
				t.Errorf("Rcpts = %v, want [%v]", res.Rcpts, want)
			}
			if res.Data.Code/100 == 2 {
				t.Errorf("Data = %v, want no success", res.Data)
			}
		})
	}
}

func TestClientMailRefused(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"step", `
S: 220 mx.test
C: EHLO client.test
S: 250 mx.test
C: MAIL FROM:<a@x.test>
S: 451 4.3.0 Try later`},
		{"pipelined", `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 PIPELINING
C: MAIL FROM:<a@x.test>
C: RCPT TO:<b@y.test>
C: DATA
S: 451 4.3.0 Try later
S: 503 5.5.1 Need MAIL first
S: 503 5.5.1 Need MAIL first`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := fakeServer(t, tc.script, nil)
			c := dialFake(t, addr, testOptions())
			defer func() { c.Close(); <-done }()
			res, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("x"))
			var r Reply
			if !errors.As(err, &r) || !r.Temporary() || r.String() != "451 4.3.0 Try later" {
				t.Fatalf("Send error = %v, want the 451 reply", err)
			}
			if !reflect.DeepEqual(res.Mail, r) {
				t.Errorf("Result.Mail = %v, want %v", res.Mail, r)
			}
		})
	}
}

func TestClientDataRefused(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250 mx.test
C: MAIL FROM:<a@x.test>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: DATA
S: 354 go
C: spam
C: .
S: 554 5.7.1 Rejected by policy
C: MAIL FROM:<a@x.test>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: DATA
S: 451 4.3.0 Not now
C: RSET
S: 250 ok`, nil)
	c := dialFake(t, addr, testOptions())
	defer func() { c.Close(); <-done }()
	_, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("spam"))
	var r Reply
	if !errors.As(err, &r) || !r.Permanent() {
		t.Errorf("first Send: %v, want a permanent reply", err)
	}
	res, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("spam"))
	if !errors.As(err, &r) || !r.Temporary() || res.Data.Code != 451 {
		t.Errorf("second Send: %v, Data %v; want the 451 reply", err, res.Data)
	}
}

func TestClientGreeting554(t *testing.T) {
	addr, done := fakeServer(t, `S: 554 5.7.1 Go away`, nil)
	_, err := Dial(context.Background(), addr, testOptions())
	var r Reply
	if !errors.As(err, &r) || !r.Permanent() || r.Enhanced != (sdk.EnhancedCode{5, 7, 1}) {
		t.Errorf("Dial error = %v, want the 554 5.7.1 reply", err)
	}
	<-done
}

func TestClient421ClosesSession(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 PIPELINING
C: MAIL FROM:<a@x.test>
C: RCPT TO:<b@y.test>
C: DATA
S: 421 4.3.2 Shutting down`, nil)
	c := dialFake(t, addr, testOptions())
	_, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("x"))
	var r Reply
	if !errors.As(err, &r) || r.Code != 421 {
		t.Errorf("Send error = %v, want the 421 reply", err)
	}
	if err := c.Noop(context.Background()); err == nil {
		t.Errorf("Noop after 421 succeeded, want an error")
	}
	<-done
}

func TestClientStartTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	addr, done := fakeServer(t, `
S: 220 mx.test ESMTP
C: EHLO client.test
S: 250-mx.test
S: 250 STARTTLS
C: STARTTLS
S: 220 2.0.0 Ready to start TLS
S: <starttls>
C: EHLO client.test
S: 250-mx.test
S: 250 AUTH PLAIN
C: AUTH PLAIN AHVzZXIAc2VjcmV0
S: 235 2.7.0 Authentication successful
C: QUIT
S: 221 bye`, &tls.Config{Certificates: []tls.Certificate{cert}})
	c := dialFake(t, addr, testOptions())
	ctx := context.Background()
	// ServerName comes from the dialled host, 127.0.0.1 (an IP SAN).
	if err := c.StartTLS(ctx, &tls.Config{RootCAs: pool}); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		t.Errorf("TLSConnectionState = %v, %v; want a completed handshake", st.HandshakeComplete, ok)
	}
	if _, ok := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS still offered after the second EHLO")
	}
	if err := c.Auth(ctx, sasl.NewPlainClient("", "user", "secret")); err != nil {
		t.Errorf("Auth: %v", err)
	}
	if err := c.Quit(ctx); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

func TestClientStartTLSInjection(t *testing.T) {
	// The server's 220 and a forged reply arrive in one packet: the forged
	// reply must not be read as if it came through TLS.
	addr, done := fakeServer(t, `
S: 220 mx.test ESMTP
C: EHLO client.test
S: 250-mx.test
S: 250 STARTTLS
C: STARTTLS
S: 220 go ahead\r\n250-forged`, nil)
	c := dialFake(t, addr, testOptions())
	err := c.StartTLS(context.Background(), &tls.Config{InsecureSkipVerify: true})
	if !errors.Is(err, ErrMalformedReply) {
		t.Errorf("StartTLS = %v, want ErrMalformedReply", err)
	}
	<-done
}

func TestClientAuth(t *testing.T) {
	t.Run("login", func(t *testing.T) {
		addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 AUTH LOGIN PLAIN
C: AUTH LOGIN dXNlcg==
S: 334 UGFzc3dvcmQ6
C: c2VjcmV0
S: 235 2.7.0 ok`, nil)
		c := dialFake(t, addr, testOptions())
		if err := c.Auth(context.Background(), sasl.NewLoginClient("user", "secret")); err != nil {
			t.Errorf("Auth: %v", err)
		}
		c.Close()
		<-done
	})
	t.Run("refused", func(t *testing.T) {
		addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 AUTH PLAIN
C: AUTH PLAIN AHVzZXIAd3Jvbmc=
S: 535 5.7.8 Authentication credentials invalid`, nil)
		c := dialFake(t, addr, testOptions())
		err := c.Auth(context.Background(), sasl.NewPlainClient("", "user", "wrong"))
		var r Reply
		if !errors.As(err, &r) || r.Code != 535 {
			t.Errorf("Auth = %v, want the 535 reply", err)
		}
		c.Close()
		<-done
	})
	t.Run("not offered", func(t *testing.T) {
		addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250 mx.test`, nil)
		c := dialFake(t, addr, testOptions())
		if err := c.Auth(context.Background(), sasl.NewPlainClient("", "u", "p")); !errors.Is(err, ErrNotOffered) {
			t.Errorf("Auth = %v, want ErrNotOffered", err)
		}
		c.Close()
		<-done
	})
}

func TestClientRefusesBadInput(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 DSN
C: NOOP
S: 250 ok`, nil)
	c := dialFake(t, addr, testOptions())
	ctx := context.Background()
	if err := c.Hello(ctx); err != nil {
		t.Fatalf("Hello: %v", err)
	}
	utf8 := env("a@x.test", "b@y.test")
	utf8.SMTPUTF8 = true
	_, err := c.Send(ctx, utf8, strings.NewReader("x"))
	var r Reply
	if !errors.Is(err, ErrSMTPUTF8Unsupported) || !errors.As(err, &r) || !r.Permanent() || r.Enhanced != (sdk.EnhancedCode{5, 6, 7}) {
		t.Errorf("Send SMTPUTF8 = %v, want ErrSMTPUTF8Unsupported as a 553 5.6.7 reply", err)
	}
	for _, e := range []*envelope.Envelope{
		env("a@x.test\r\nRSET", "b@y.test"),
		env("a@x.test", "b@y.test\nDATA"),
		{Sender: envelope.Address{Local: "a", Domain: "x.test"}, EnvID: "a b", Recipients: env("", "b@y.test").Recipients},
		env("a@x.test"),
	} {
		if _, err := c.Send(ctx, e, strings.NewReader("x")); !errors.Is(err, ErrBadCommand) {
			t.Errorf("Send(%+v) = %v, want ErrBadCommand", e, err)
		}
	}
	// Nothing reached the wire: the connection is still in step.
	if err := c.Noop(ctx); err != nil {
		t.Errorf("Noop: %v", err)
	}
	c.Close()
	<-done
}

func TestClientTimeout(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test
C: NOOP`, nil)
	opt := testOptions()
	opt.Timeout = 200 * time.Millisecond
	c := dialFake(t, addr, opt)
	start := time.Now()
	err := c.Noop(context.Background())
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Noop = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Noop took %v", d)
	}
	<-done
}

func TestClientContextCancel(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 mx.test
C: NOOP`, nil)
	c := dialFake(t, addr, testOptions())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := c.Noop(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Noop = %v, want context.Canceled", err)
	}
	<-done
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mx.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"mx.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true,

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Reply
		err      error
	}{
		{"simple", "250 ok\r\n", Reply{Code: 250, Lines: []string{"ok"}}, nil},
		{"enhanced", "550 5.1.1 No such user\r\n", R(550, sdk.EnhancedCode{5, 1, 1}, "No such user"), nil},
		{"code only", "250\r\n", Reply{Code: 250, Lines: []string{""}}, nil},
		{"bare LF", "220 hi\n", Reply{Code: 220, Lines: []string{"hi"}}, nil},
		{"multi-line", "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
			Reply{Code: 250, Lines: []string{"mx.test", "PIPELINING", "SIZE 100"}}, nil},
		{"multi-line enhanced", "550-5.7.1 first\r\n550-5.7.1 second\r\n550 third\r\n",
			Reply{Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 1}, Lines: []string{"first", "second", "third"}}, nil},
		{"enhanced of the wrong class stays text", "250 5.0.0 odd\r\n", Reply{Code: 250, Lines: []string{"5.0.0 odd"}}, nil},
		{"later different enhanced stays text", "451-4.3.0 a\r\n451 4.4.1 b\r\n",
			Reply{Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Lines: []string{"a", "4.4.1 b"}}, nil},
		{"stray CR", "250 a\rb\r\n", Reply{Code: 250, Lines: []string{"a b"}}, nil},
		{"inconsistent codes", "250-a\r\n251 b\r\n", Reply{}, ErrMalformedReply},
		{"two-digit code", "25 ok\r\n", Reply{}, ErrMalformedReply},
		{"code 600", "600 ok\r\n", Reply{}, ErrMalformedReply},
		{"bad separator", "250_ok\r\n", Reply{}, ErrMalformedReply},
		{"line too long", "250 " + strings.Repeat("x", clientMaxReplyLine) + "\r\n", Reply{}, ErrMalformedReply},
		{"too many lines", strings.Repeat("250-x\r\n", clientMaxReplyLines+1) + "250 x\r\n", Reply{}, ErrMalformedReply},
		{"truncated", "250-a\r\n250 b", Reply{}, io.ErrUnexpectedEOF},
		{"empty", "", Reply{}, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), clientMaxReplyLine))
			if !errors.Is(err, tc.err) {
				t.Fatalf("readReply(%q) error = %v, want %v", tc.in, err, tc.err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("readReply(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzReadReply: readReply never panics, keeps its bounds, and a reply it
// accepts reads back the same from its own rendering.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 ok\r\n",
		"250-mx.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n",
		"550-5.7.1 first\r\n550 5.7.1 second\r\n",
		"451 4.3.0\r\n",
		"250 002.0.0 x\r\n",
		"250-a\r\n251 b\r\n",
		"354 go\n",
		"250 a\rb\r\n",
		"220 \x00\xff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := readReply(bufio.NewReaderSize(bytes.NewReader(in), clientMaxReplyLine))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > clientMaxReplyLines {
			t.Fatalf("readReply(%q) = %#v: out of bounds", in, r)
		}
		if !r.Enhanced.IsZero() && int(r.Enhanced[0]) != r.Code/100 {
			t.Fatalf("readReply(%q): enhanced %s does not match code %d", in, r.Enhanced, r.Code)
		}
		wire := r.String() + "\r\n"
		for _, l := range strings.Split(wire, "\r\n") {
			if len(l)+2 > clientMaxReplyLine {
				return // the enhanced code added to a long line: no round trip
			}
		}
		r2, err := readReply(bufio.NewReaderSize(strings.NewReader(wire), clientMaxReplyLine))
		if err != nil || !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip of %q via %q: got %#v, %v; want %#v", in, wire, r2, err, r)
		}
	})
}

func TestDotWriter(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ".\r\n"},
		{"no final newline", "a", "a\r\n.\r\n"},
		{"crlf kept", "a\r\nb\r\n", "a\r\nb\r\n.\r\n"},
		{"bare lf", "a\nb\n", "a\r\nb\r\n.\r\n"},
		{"bare cr", "a\rb\r", "a\r\nb\r\n.\r\n"},
		{"dot lines", ".\r\n..\n.x\r\nx.\r\n", "..\r\n...\r\n..x\r\nx.\r\n.\r\n"},
		{"lone dot", ".", "..\r\n.\r\n"},
		{"smuggling attempt", "a\n.\nb\r.\rc\r\n.\r\n", "a\r\n..\r\nb\r\n..\r\nc\r\n..\r\n.\r\n"},
		{"empty lines", "\n\r\n\r", "\r\n\r\n\r\n.\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 2, 3} {
				var out bytes.Buffer
				bw := bufio.NewWriter(&out)
				d := dotWriter{w: bw}
				in := []byte(tc.in)
				if chunk == 0 {
					d.Write(in)
				} else {
					for len(in) > 0 {
						n := min(chunk, len(in))
						d.Write(in[:n])
						in = in[n:]
					}
				}
				if err := d.close(); err != nil {
					t.Fatal(err)
				}
				bw.Flush()
				if got := out.String(); got != tc.want {
					t.Errorf("chunk %d: got %q, want %q", chunk, got, tc.want)
				}
			}
		})
	}
}

func BenchmarkDotWriter(b *testing.B) {
	line := strings.Repeat("x", 76) + "\r\n"
	body := []byte(strings.Repeat(line, 100))
	bw := bufio.NewWriter(io.Discard)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		d := dotWriter{w: bw}
		d.Write(body)
		d.close()
	}
}

const lhlo = `
S: 220 lmtp.test LMTP ready
C: LHLO client.test
S: 250-lmtp.test
S: 250-PIPELINING
S: 250-ENHANCEDSTATUSCODES
S: 250 8BITMIME`

func lmtpOptions() ClientOptions {
	opt := testOptions()
	opt.LMTP = true
	return opt
}

// TestClientLMTP checks a pipelined LMTP transaction byte for byte: LHLO,
// one refused recipient, and after the message one reply per accepted
// recipient in RCPT order (RFC 2033 §4.2), with none for the refused one.
func TestClientLMTP(t *testing.T) {
	addr, done := fakeServer(t, lhlo+`
C: MAIL FROM:<a@x.test> BODY=8BITMIME
C: RCPT TO:<b@y.test>
C: RCPT TO:<nobody@y.test>
C: RCPT TO:<c@y.test>
C: DATA
S: 250 2.1.0 Sender ok
S: 250 2.1.5 Recipient ok
S: 550 5.1.1 No such user
S: 250 2.1.5 Recipient ok
S: 354 Go ahead
C: Subject: t
C:
C: body
C: .
S: 250 2.0.0 <b@y.test> Saved as 17
S: 452 4.2.2 <c@y.test> Mailbox full
C: QUIT
S: 221 2.0.0 Bye`, nil)
	c := dialFake(t, addr, lmtpOptions())
	e := env("a@x.test", "b@y.test", "nobody@y.test", "c@y.test")
	e.Body = envelope.Body8BitMIME
	res, err := c.Send(context.Background(), e, strings.NewReader("Subject: t\n\nbody\n"))
	if err != nil {
		t.Fatalf("Send: %v, want nil (the outcome is per recipient)", err)
	}
	want := Result{
		Mail: R(250, sdk.EnhancedCode{2, 1, 0}, "Sender ok"),
		Rcpts: []Reply{
			R(250, sdk.EnhancedCode{2, 1, 5}, "Recipient ok"),
			R(550, sdk.EnhancedCode{5, 1, 1}, "No such user"),
			R(250, sdk.EnhancedCode{2, 1, 5}, "Recipient ok"),
		},
		Data: R(250, sdk.EnhancedCode{2, 0, 0}, "<b@y.test> Saved as 17"),
		DataPerRcpt: []Reply{
			R(250, sdk.EnhancedCode{2, 0, 0}, "<b@y.test> Saved as 17"),
			{},
			R(452, sdk.EnhancedCode{4, 2, 2}, "<c@y.test> Mailbox full"),
		},
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("Send result:\n got %+v\nwant %+v", res, want)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v after a complete transaction, want nil", err)
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	<-done
}

// TestClientLMTPStepByStep: without PIPELINING the commands go one at a
// time; the first reply after the message that fails still leaves the
// others to be read, and the queue ID comes from the first success.
func TestClientLMTPStepByStep(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 lmtp.test LMTP ready
C: LHLO client.test
S: 250 lmtp.test
C: MAIL FROM:<>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: RCPT TO:<c@y.test>
S: 250 ok
C: DATA
S: 354 go
C: x
C: .
S: 451 4.3.0 Temporary failure
S: 250 2.0.0 Ok: queued as Q1`, nil)
	c := dialFake(t, addr, lmtpOptions())
	defer func() { c.Close(); <-done }()
	res, err := c.Send(context.Background(), env("", "b@y.test", "c@y.test"), strings.NewReader("x"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	wantPer := []Reply{R(451, sdk.EnhancedCode{4, 3, 0}, "Temporary failure"), R(250, sdk.EnhancedCode{2, 0, 0}, "Ok: queued as Q1")}
	if !reflect.DeepEqual(res.DataPerRcpt, wantPer) || !reflect.DeepEqual(res.Data, wantPer[0]) || res.ID != "Q1" {
		t.Errorf("DataPerRcpt = %v, Data %v, ID %q; want %v, %v, Q1", res.DataPerRcpt, res.Data, res.ID, wantPer, wantPer[0])
	}
}

func TestClientLMTPNoHELOFallback(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 lmtp.test LMTP ready
C: LHLO client.test
S: 500 5.5.1 Unknown command`, nil)
	c := dialFake(t, addr, lmtpOptions())
	defer func() { c.Close(); <-done }()
	err := c.Hello(context.Background())
	var r Reply
	if !errors.As(err, &r) || r.Code != 500 {
		t.Errorf("Hello = %v, want the 500 reply (and no HELO)", err)
	}
}

// TestClientLMTPSessionEnds: a 421 among the replies after the message, or
// the connection closing, ends the reading; the recipients not answered
// keep a zero Reply.
func TestClientLMTPSessionEnds(t *testing.T) {
	const head = `
S: 220 lmtp.test LMTP ready
C: LHLO client.test
S: 250 lmtp.test
C: MAIL FROM:<a@x.test>
S: 250 ok
C: RCPT TO:<b@y.test>
S: 250 ok
C: RCPT TO:<c@y.test>
S: 250 ok
C: RCPT TO:<d@y.test>
S: 250 ok
C: DATA
S: 354 go
C: x
C: .
S: 250 2.0.0 Saved`
	for _, tc := range []struct {
		name    string
		tail    string
		want421 bool
	}{
		{"421", "\nS: 421 4.3.2 Shutting down", true},
		{"closed", "\nS: <close>", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := fakeServer(t, head+tc.tail, nil)
			c := dialFake(t, addr, lmtpOptions())
			defer func() { c.Close(); <-done }()
			res, err := c.Send(context.Background(), env("a@x.test", "b@y.test", "c@y.test", "d@y.test"), strings.NewReader("x"))
			var r Reply
			if got421 := errors.As(err, &r) && r.Code == 421; err == nil || got421 != tc.want421 {
				t.Errorf("Send error = %v, want a 421 reply: %v", err, tc.want421)
			}
			want := []Reply{R(250, sdk.EnhancedCode{2, 0, 0}, "Saved"), {}, {}}
			if tc.want421 {
				want[1] = R(421, sdk.EnhancedCode{4, 3, 2}, "Shutting down")
			}
			if !reflect.DeepEqual(res.DataPerRcpt, want) {
				t.Errorf("DataPerRcpt = %v, want %v", res.DataPerRcpt, want)
			}
			if c.Err() == nil {
				t.Errorf("Err() = nil after the session ended")
			}
		})
	}
}

// TestClientLMTPDataWithoutRecipients: an LMTP server that answers DATA
// with 354 although every RCPT was refused breaks RFC 2033 §4.2; after "."
// it would owe no reply, so the client gives the session up rather than
// wait.
func TestClientLMTPDataWithoutRecipients(t *testing.T) {
	addr, done := fakeServer(t, `
S: 220 lmtp.test LMTP ready
C: LHLO client.test
S: 250-lmtp.test
S: 250 PIPELINING
C: MAIL FROM:<a@x.test>
C: RCPT TO:<b@y.test>
C: DATA
S: 250 ok
S: 550 5.1.1 No such user
S: 354 go ahead`, nil)
	c := dialFake(t, addr, lmtpOptions())
	defer func() { c.Close(); <-done }()
	res, err := c.Send(context.Background(), env("a@x.test", "b@y.test"), strings.NewReader("never sent"))
	if !errors.Is(err, ErrMalformedReply) {
		t.Errorf("Send error = %v, want ErrMalformedReply", err)
	}
	if want := []Reply{R(550, sdk.EnhancedCode{5, 1, 1}, "No such user")}; !reflect.DeepEqual(res.Rcpts, want) {
		t.Errorf("Rcpts = %v, want %v", res.Rcpts, want)
	}
}

// TestClientRequireTLS: an envelope with REQUIRETLS says so on MAIL to a
// server that offers it under TLS (RFC 8689 §4.2.1), and is not sent at
// all to one that does not, or that offers it in clear text (an EHLO
// reply anyone on the path could have written):
// ErrRequireTLSUnsupported, a permanent 550 5.7.30.
func TestClientRequireTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	t.Run("offered under TLS", func(t *testing.T) {
		addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
S: 250 STARTTLS
C: STARTTLS
S: 220 2.0.0 Ready to start TLS
S: <starttls>
C: EHLO client.test
S: 250-mx.test
S: 250-SMTPUTF8
S: 250 REQUIRETLS
C: MAIL FROM:<a@x.test> SMTPUTF8 REQUIRETLS
S: 250 2.1.0 ok
C: RCPT TO:<b@y.test>
S: 250 2.1.5 ok
C: DATA
S: 354 go
C: x
C: .
S: 250 2.0.0 queued`, serverTLS)
		c := dialFake(t, addr, testOptions())
		ctx := context.Background()
		if err := c.StartTLS(ctx, &tls.Config{RootCAs: pool}); err != nil {
			t.Fatalf("StartTLS: %v", err)
		}
		e := env("a@x.test", "b@y.test")
		e.SMTPUTF8, e.RequireTLS = true, true
		if _, err := c.Send(ctx, e, strings.NewReader("x")); err != nil {
			t.Errorf("Send: %v", err)
		}
		c.Close()
		<-done
	})
	for _, tc := range []struct{ name, ehlo string }{
		{"not offered", "S: 250 DSN"},
		{"offered in clear text", "S: 250 REQUIRETLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := fakeServer(t, `
S: 220 mx.test
C: EHLO client.test
S: 250-mx.test
`+tc.ehlo+`
C: NOOP
S: 250 ok`, nil)
			c := dialFake(t, addr, testOptions())
			ctx := context.Background()
			e := env("a@x.test", "b@y.test")
			e.RequireTLS = true
			_, err := c.Send(ctx, e, strings.NewReader("x"))
			var r Reply
			if !errors.Is(err, ErrRequireTLSUnsupported) || !errors.As(err, &r) || !r.Permanent() ||
				r.Code != 550 || r.Enhanced != (sdk.EnhancedCode{5, 7, 30}) {
				t.Errorf("Send = %v, want ErrRequireTLSUnsupported as a 550 5.7.30 reply", err)
			}
			// Nothing reached the wire: the next command is NOOP.
			if err := c.Noop(ctx); err != nil {
				t.Errorf("Noop: %v", err)
			}
			c.Close()
			<-done
		})
	}
}
