package smtp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// implicitTLS sets a listener up for TLS from the first byte (RFC 8314),
// with AUTH required as on a submission port.
func implicitTLS(t *testing.T) func(*smtp.Options) {
	serverTLS, _ := smtptest.TLSConfigs(t)
	return func(o *smtp.Options) {
		o.TLS = serverTLS
		o.Listener.TLS = &config.TLS{Implicit: true}
		o.Listener.AuthRequired = true
		o.Auth = passwords(t)
	}
}

// TestImplicitTLS: the greeting comes over TLS, STARTTLS is not offered,
// AUTH and REQUIRETLS are, and the message is recorded as received under
// TLS.
func TestImplicitTLS(t *testing.T) {
	addr, spool, _ := start(t, implicitTLS(t))
	c := smtptest.Dial(t, addr)
	c.Run("TLS\n" + greeting + "C: EHLO client.test\n" + ehloTLSAuth + `
		C: MAIL FROM:<a@example.net>
		S: 530 5.7.0 Authentication required
		C: STARTTLS
		S: 503 5.5.1 TLS already active
		C: AUTH PLAIN ` + authPlain("alice", "secret") + `
		S: 235 2.7.0 Authentication successful
		C: MAIL FROM:<a@example.net> REQUIRETLS
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@elsewhere.test>
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
	if e := m.Envelope; !e.TLS || !e.RequireTLS || e.AuthUser != "alice" {
		t.Errorf("envelope TLS %v RequireTLS %v AuthUser %q, want true true alice", e.TLS, e.RequireTLS, e.AuthUser)
	}
	if !strings.Contains(string(m.Header), " with ESMTPSA id ") {
		t.Errorf("header %q: want ESMTPSA", m.Header)
	}
}

// TestImplicitTLSHandshakeFailure: a client that speaks plain SMTP to an
// implicit TLS listener is closed without a greeting, and no hook hears of
// it.
func TestImplicitTLSHandshakeFailure(t *testing.T) {
	var calls atomic.Int32
	tlsOpts := implicitTLS(t)
	addr, _, _ := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			calls.Add(1)
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	smtptest.Run(t, addr, `
		C: EHLO client.test
		EOF
	`)
	if n := calls.Load(); n != 0 {
		t.Errorf("hooks called %d times, want 0", n)
	}
}

func TestImplicitTLSNeedsCertificate(t *testing.T) {
	opt := baseOptions()
	opt.Spool = &smtptest.MemorySpool{}
	opt.Listener.TLS = &config.TLS{Implicit: true}
	if _, err := smtp.NewServer(opt); err == nil || !strings.Contains(err.Error(), "implicit TLS needs a certificate") {
		t.Errorf("NewServer = %v, want the missing certificate named", err)
	}
}

// TestImplicitTLSBehindProxy: a balancer passes TLS through and puts its
// PROXY header in front, in the same write as the client's first TLS
// record: the header is read in the clear, what came with it goes to the
// handshake, and the session is the header's client, under TLS.
func TestImplicitTLSBehindProxy(t *testing.T) {
	var seen clientSeen
	tlsOpts := implicitTLS(t)
	addr, _, _ := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
		o.Hooks = seen.hooks()
	})
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	conn := &headerFirst{Conn: raw, header: []byte("PROXY TCP6 2001:db8::7 2001:db8::1 40000 465\r\n")}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	if _, err := io.WriteString(tc, "QUIT\r\n"); err != nil { // the handshake, then QUIT
		t.Fatal(err)
	}
	out, err := io.ReadAll(tc)
	if want := "220 mx.test ESMTP ready\r\n221 2.0.0 Bye\r\n"; string(out) != want {
		t.Errorf("got %q (%v), want %q", out, err, want)
	}
	if got := seen.get(sdk.StageConnect); got != netip.MustParseAddr("2001:db8::7") {
		t.Errorf("connect hook saw %v, want 2001:db8::7", got)
	}
}

// headerFirst sends header with the first write, as a balancer does.
type headerFirst struct {
	net.Conn
	header []byte
}

func (c *headerFirst) Write(p []byte) (int, error) {
	if c.header != nil {
		b := append(c.header, p...)
		c.header = nil
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// TestImplicitTLSShutdownDuringHandshake: a client that connects to an
// implicit-TLS listener and sends nothing is outside any mail
// transaction, like a session waiting for its first command, so a
// graceful Shutdown must not wait for it: wakeIdle ends the handshake as
// it ends a wait for the first command. (It did not, and the handshake
// ran on under the command timeout, 5 minutes by default: every stop
// waited for the whole grace period.)
func TestImplicitTLSShutdownDuringHandshake(t *testing.T) {
	addr, _, srv := start(t, implicitTLS(t))
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(100 * time.Millisecond) // accepted, in the handshake
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil (no transaction to finish)", err)
	}
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Errorf("Shutdown took %v with a silent client in the TLS handshake", d)
	}
}

// TestImplicitTLSTurnedAwayOverTLS: a client over a connection limit on
// an implicit-TLS listener gets its "421 Too many connections" in clear
// text, which its TLS stack reads as a bad record ("first record does
// not look like a TLS handshake"): the reply it must retry on is never
// seen. On such a listener the refusal comes after a handshake.
func TestImplicitTLSTurnedAwayOverTLS(t *testing.T) {
	tlsOpts := implicitTLS(t)
	addr, _, srv := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Listener.MaxConnectionsPerIP = 1
	})
	first, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(first).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("first greeting %q, %v", line, err)
	}
	second, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("second connection: TLS handshake failed (%v); want the 421 over TLS", err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(second).ReadString('\n'); !strings.HasPrefix(line, "421 ") {
		t.Errorf("second connection read %q, %v; want 421", line, err)
	}
	// Both handshakes cost the server one: both are counted.
	full := smtp.TLSHandshake{Result: smtp.HandshakeFull, Version: "TLSv1.3"}
	if got := srv.Stats().TLSHandshakes[full]; got != 2 {
		t.Errorf("full TLS 1.3 handshakes counted = %d, want 2 (the session's and the one turned away)", got)
	}
}

// TestImplicitTLSTurnAwayShutdown: the handshake before a connection-limit
// 421 is bounded, and a Shutdown does not wait for a client over the limit
// that never starts it.
func TestImplicitTLSTurnAwayShutdown(t *testing.T) {
	tlsOpts := implicitTLS(t)
	addr, _, srv := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Listener.MaxConnections = 1
	})
	first, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(first).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("first greeting %q, %v", line, err)
	}
	silent, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(100 * time.Millisecond) // accepted, turned away, in the handshake
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if d := time.Since(began); d > 1500*time.Millisecond {
		t.Errorf("Shutdown took %v with a silent client being turned away", d)
	}
}
