package delivery_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// The message every test sends: CRLF lines, a leading dot to stuff.
const smtpTestBody = "From: alice@sender.test\r\nSubject: hi\r\n\r\n.dotted line\r\nbye\r\n"

// testMTA is a real smtp.Server on loopback with a MemorySpool, a hook that
// records the stages it saw (connect and disconnect count sessions) and an
// optional rcpt policy.
type testMTA struct {
	addr  string
	port  int
	spool *smtptest.MemorySpool
	seen  *hooktest.Fixed
}

// testMTAConfig changes a test server's options.
type testMTAConfig struct {
	listen string                               // "" = 127.0.0.1:0
	rcpt   func(envelope.Address) sdk.Decision  // nil = Continue (relay from loopback)
	mod    func(*smtp.Options)                  // last word on the options
	hook   func(req *hook.Request) sdk.Decision // any stage; nil = Continue
}

// startTestMTA runs a server until the end of the test.
func startTestMTA(t testing.TB, cfg testMTAConfig) *testMTA {
	t.Helper()
	m := &testMTA{spool: &smtptest.MemorySpool{}, seen: &hooktest.Fixed{HandlerName: "seen"}}
	policy := hooktest.Func{HandlerName: "policy", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		if cfg.hook != nil {
			if d := cfg.hook(req); d.Verdict != sdk.Continue {
				return d, sdk.Effects{}, nil
			}
		}
		if req.Stage == sdk.StageRcpt && cfg.rcpt != nil {
			return cfg.rcpt(req.Rcpt.Address), sdk.Effects{}, nil
		}
		return sdk.Decision{}, sdk.Effects{}, nil
	}}
	opt := smtp.Options{
		Hostname:      "mx.test",
		Listener:      config.Listener{Name: "test", MaxMessageSize: 1 << 20},
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Hooks:         hook.NewChain(nil, hook.Entry{Handler: m.seen}, hook.Entry{Handler: policy}),
		Spool:         m.spool,
		Log:           transportLog(t),
	}
	if cfg.mod != nil {
		cfg.mod(&opt)
	}
	listen := cfg.listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	srv, err := smtp.NewServer(opt)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("listen %s: %v", listen, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want net.ErrClosed", err)
		}
	})
	m.addr = ln.Addr().String()
	m.port = ln.Addr().(*net.TCPAddr).Port
	return m
}

// count returns how many times the server ran stage.
func (m *testMTA) count(stage sdk.Stage) int {
	n := 0
	for _, s := range m.seen.Calls() {
		if s == stage {
			n++
		}
	}
	return n
}

// waitCount waits until the server ran stage n times, for sessions that end
// on their own time.
func (m *testMTA) waitCount(t *testing.T, stage sdk.Stage, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.count(stage) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := m.count(stage); got != n {
		t.Errorf("server ran %s %d times, want %d", stage, got, n)
	}
}

// transportLog logs to t.
func transportLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// parseAddr splits "local@domain".
func parseAddr(s string) envelope.Address {
	l, d, _ := strings.Cut(s, "@")
	return envelope.Address{Local: l, Domain: d}
}

// newTestJob is a job from alice@sender.test to rcpts, whose domain is the
// first recipient's. opens counts the calls of Open.
func newTestJob(route delivery.Route, body string, rcpts ...string) (job *delivery.Job, opens *atomic.Int32) {
	opens = new(atomic.Int32)
	env := &envelope.Envelope{Sender: parseAddr("alice@sender.test"), Received: time.Now()}
	job = &delivery.Job{
		ID:       "Q1",
		Envelope: env,
		Route:    route,
		Size:     int64(len(body)),
		Open: func() (io.ReadCloser, error) {
			opens.Add(1)
			return io.NopCloser(strings.NewReader(body)), nil
		},
	}
	for _, r := range rcpts {
		job.Recipients = append(job.Recipients, envelope.Recipient{Address: parseAddr(r)})
	}
	if len(rcpts) > 0 {
		job.Domain = strings.ToLower(parseAddr(rcpts[0]).Domain)
	}
	return job, opens
}

// newSMTPTransport returns an SMTP transport closed at the end of the test.
func newSMTPTransport(t testing.TB, opt delivery.SMTPOptions) *delivery.SMTP {
	t.Helper()
	if opt.Hostname == "" {
		opt.Hostname = "gw.test"
	}
	if opt.ConnectTimeout == 0 {
		opt.ConnectTimeout = 2 * time.Second
	}
	if opt.CommandTimeout == 0 {
		opt.CommandTimeout = 5 * time.Second
	}
	if opt.Log == nil {
		opt.Log = transportLog(t)
	}
	tr := delivery.NewSMTP(opt)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// newTestResolver serves zone on loopback and returns a resolver asking it.
func newTestResolver(t testing.TB, zone string) (*resolver.Resolver, *resolvertest.Server) {
	t.Helper()
	dnsSrv := resolvertest.Start(t, zone)
	r, err := resolver.New(resolver.Options{Servers: []string{dnsSrv.Addr()}, Timeout: time.Second, Attempts: 1})
	if err != nil {
		t.Fatalf("resolver.New: %v", err)
	}
	return r, dnsSrv
}

// viaMTA is a static route to m without STARTTLS.
func viaMTA(m *testMTA) delivery.Route {
	return delivery.Route{Transport: "smtp", Via: m.addr, TLS: delivery.TLSNone}
}

// deliveredResult is a Delivered result from a test MTA, which offers DSN.
func deliveredResult(text, remote string) delivery.Result {
	return delivery.Result{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: text, RemoteMTA: remote,
		Handoff: delivery.HandoffDSN}
}

// checkSpooled checks that m received exactly one message per want entry,
// from alice@sender.test with smtpTestBody, to the listed recipients.
func checkSpooled(t *testing.T, m *testMTA, want ...[]string) []smtptest.Message {
	t.Helper()
	msgs := m.spool.Messages()
	if len(msgs) != len(want) {
		t.Fatalf("server spooled %d messages, want %d", len(msgs), len(want))
	}
	for i, msg := range msgs {
		var rcpts []string
		for _, r := range msg.Envelope.Recipients {
			rcpts = append(rcpts, r.Address.String())
		}
		if diff := cmp.Diff(want[i], rcpts); diff != "" {
			t.Errorf("message %d recipients (-want +got):\n%s", i, diff)
		}
		if got := msg.Envelope.Sender.String(); got != "alice@sender.test" {
			t.Errorf("message %d sender = %q, want alice@sender.test", i, got)
		}
		if got := msg.Envelope.ClientHELO; got != "gw.test" {
			t.Errorf("message %d HELO = %q, want gw.test", i, got)
		}
		if got := string(msg.Body); got != smtpTestBody {
			t.Errorf("message %d body = %q, want %q", i, got, smtpTestBody)
		}
	}
	return msgs
}

func TestSMTPDelivered(t *testing.T) {
	m := startTestMTA(t, testMTAConfig{})
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	job, opens := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test", "carol@example.test")
	job.Envelope.EnvID = "env1"
	job.Recipients[0].Notify = envelope.NotifySuccess
	got := tr.Deliver(context.Background(), job)
	msgs := checkSpooled(t, m, []string{"bob@example.test", "carol@example.test"})
	want := []delivery.Result{
		deliveredResult("250 2.0.0 Ok: queued as "+msgs[0].ID, "[127.0.0.1]"),
		deliveredResult("250 2.0.0 Ok: queued as "+msgs[0].ID, "[127.0.0.1]"),
	}
	if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	env := msgs[0].Envelope
	if env.EnvID != "env1" || env.Recipients[0].Notify != envelope.NotifySuccess || env.Size != int64(len(smtpTestBody)) || env.TLS {
		t.Errorf("spooled envelope = %+v; want ENVID env1, NOTIFY=SUCCESS on bob, SIZE %d, no TLS", env, len(smtpTestBody))
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("Open called %d times, want 1", n)
	}
}

// TestSMTPReplies: per-recipient RCPT replies decide per recipient; the
// reply after the message goes to the accepted ones.
func TestSMTPReplies(t *testing.T) {
	rcptPolicy := func(a envelope.Address) sdk.Decision {
		switch a.Local {
		case "later":
			return sdk.DeferDecision(451, sdk.EnhancedCode{4, 7, 1}, "Try again later")
		case "nobody":
			return sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "No such user")
		}
		return sdk.Decision{}
	}
	m := startTestMTA(t, testMTAConfig{rcpt: rcptPolicy})
	tempFail := delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 7, 1}, Text: "451 4.7.1 Try again later", RemoteMTA: "[127.0.0.1]"}
	permFail := delivery.Result{Class: delivery.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 1, 1}, Text: "550 5.1.1 No such user", RemoteMTA: "[127.0.0.1]"}
	for _, tc := range []struct {
		name      string
		rcpts     []string
		want      []delivery.Result // "queued" in Text stands for the server's reply
		delivered []string
	}{
		{"451", []string{"later@example.test"}, []delivery.Result{tempFail}, nil},
		{"550", []string{"nobody@example.test"}, []delivery.Result{permFail}, nil},
		{"451 and 550", []string{"later@example.test", "nobody@example.test"}, []delivery.Result{tempFail, permFail}, nil},
		{"mixed", []string{"later@example.test", "bob@example.test", "nobody@example.test", "carol@example.test"},
			[]delivery.Result{tempFail, deliveredResult("queued", "[127.0.0.1]"), permFail, deliveredResult("queued", "[127.0.0.1]")},
			[]string{"bob@example.test", "carol@example.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newSMTPTransport(t, delivery.SMTPOptions{})
			before := len(m.spool.Messages())
			job, _ := newTestJob(viaMTA(m), smtpTestBody, tc.rcpts...)
			got := tr.Deliver(context.Background(), job)
			msgs := m.spool.Messages()[before:]
			want := append([]delivery.Result(nil), tc.want...)
			for i := range want {
				if want[i].Text == "queued" && len(msgs) == 1 {
					want[i].Text = "250 2.0.0 Ok: queued as " + msgs[0].ID
				}
			}
			if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
				t.Errorf("Deliver (-want +got):\n%s", diff)
			}
			switch {
			case tc.delivered == nil && len(msgs) != 0:
				t.Errorf("server spooled %d messages, want none", len(msgs))
			case tc.delivered != nil && (len(msgs) != 1 || !sameRecipients(msgs[0].Envelope.Recipients, tc.delivered)):
				t.Errorf("server spooled %+v, want one message to %v", msgs, tc.delivered)
			}
		})
	}
}

func sameRecipients(rs []envelope.Recipient, want []string) bool {
	if len(rs) != len(want) {
		return false
	}
	for i, r := range rs {
		if r.Address.String() != want[i] {
			return false
		}
	}
	return true
}

// TestSMTPMailAndDataRefused: a refused MAIL answers for every recipient,
// a refused message for the accepted ones only.
func TestSMTPMailAndDataRefused(t *testing.T) {
	t.Run("MAIL 452", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{hook: func(req *hook.Request) sdk.Decision {
			if req.Stage == sdk.StageMail {
				return sdk.DeferDecision(452, sdk.EnhancedCode{4, 3, 1}, "Insufficient storage")
			}
			return sdk.Decision{}
		}})
		job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test", "carol@example.test")
		got := newSMTPTransport(t, delivery.SMTPOptions{}).Deliver(context.Background(), job)
		r := delivery.Result{Class: delivery.Temporary, Code: 452, Enhanced: sdk.EnhancedCode{4, 3, 1}, Text: "452 4.3.1 Insufficient storage", RemoteMTA: "[127.0.0.1]"}
		if diff := cmp.Diff([]delivery.Result{r, r}, got, ignoreTLSPolicy); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
	})
	t.Run("data 554", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{
			rcpt: func(a envelope.Address) sdk.Decision {
				if a.Local == "nobody" {
					return sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "No such user")
				}
				return sdk.Decision{}
			},
			hook: func(req *hook.Request) sdk.Decision {
				if req.Stage == sdk.StageData {
					return sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "Spam")
				}
				return sdk.Decision{}
			},
		})
		job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test", "nobody@example.test")
		got := newSMTPTransport(t, delivery.SMTPOptions{}).Deliver(context.Background(), job)
		want := []delivery.Result{
			{Class: delivery.Permanent, Code: 554, Enhanced: sdk.EnhancedCode{5, 7, 1}, Text: "554 5.7.1 Spam", RemoteMTA: "[127.0.0.1]"},
			{Class: delivery.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 1, 1}, Text: "550 5.1.1 No such user", RemoteMTA: "[127.0.0.1]"},
		}
		if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
	})
}

// scriptedServer plays the server side of script on the first connection ln
// accepts: "S: text" is sent with CRLF, "C: text" must arrive exactly,
// "C: <any>" is any one line, "S: <close>" hangs up. After the script the
// client must hang up without sending more. Problems are reported with
// t.Errorf (this runs in its own goroutine); wait on the channel.
func scriptedServer(t *testing.T, ln net.Listener, script string) <-chan struct{} {
	t.Helper()
	return scriptedTLSServer(t, ln, nil, script)
}

// scriptedTLSServer is scriptedServer with one more step, "S: <tls>": the
// server side of a TLS handshake with cfg (after the 220 to STARTTLS).
func scriptedTLSServer(t *testing.T, ln net.Listener, cfg *tls.Config, script string) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ln.Close()
		if tl, ok := ln.(*net.TCPListener); ok {
			tl.SetDeadline(time.Now().Add(10 * time.Second)) // a client that never comes fails the test, not hangs it
		}
		conn, err := ln.Accept()
		if err != nil {
			t.Errorf("scripted server: accept: %v", err)
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		for n, step := range strings.Split(strings.TrimSpace(script), "\n") {
			step = strings.TrimSpace(step)
			switch {
			case step == "S: <close>":
				return
			case step == "S: <tls>":
				tc := tls.Server(conn, cfg)
				if err := tc.Handshake(); err != nil {
					t.Errorf("scripted server: step %d: TLS: %v", n+1, err)
					return
				}
				conn, br = tc, bufio.NewReader(tc)
			case strings.HasPrefix(step, "S: "):
				if _, err := io.WriteString(conn, step[3:]+"\r\n"); err != nil {
					t.Errorf("scripted server: step %d: write: %v", n+1, err)
					return
				}
			case step == "C: <any>":
				if _, err := br.ReadString('\n'); err != nil {
					t.Errorf("scripted server: step %d: read: %v", n+1, err)
					return
				}
			case strings.HasPrefix(step, "C: ") || step == "C:":
				want := strings.TrimPrefix(strings.TrimPrefix(step, "C:"), " ") + "\r\n"
				if got, err := br.ReadString('\n'); got != want {
					t.Errorf("scripted server: step %d: got %q (err %v), want %q", n+1, got, err, want)
					return
				}
			default:
				t.Errorf("scripted server: bad script line %q", step)
				return
			}
		}
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			t.Errorf("scripted server: unexpected data after the script: %q", rest)
		}
	}()
	return done
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestSMTPConnectionLostDuringData: the server hangs up in the middle of
// the message; every recipient without a final reply is Temporary, the
// refused one keeps its 550.
func TestSMTPConnectionLostDuringData(t *testing.T) {
	ln := listenLoopback(t)
	done := scriptedServer(t, ln, `
S: 220 mx.test ESMTP
C: EHLO gw.test
S: 250-mx.test
S: 250 8BITMIME
C: MAIL FROM:<alice@sender.test>
S: 250 2.1.0 Ok
C: RCPT TO:<bob@example.test>
S: 250 2.1.5 Ok
C: RCPT TO:<nobody@example.test>
S: 550 5.1.1 No such user
C: RCPT TO:<carol@example.test>
S: 250 2.1.5 Ok
C: DATA
S: 354 Go ahead
C: From: alice@sender.test
C: <any>
S: <close>`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	job, _ := newTestJob(delivery.Route{Via: ln.Addr().String(), TLS: delivery.TLSNone}, smtpTestBody,
		"bob@example.test", "nobody@example.test", "carol@example.test")
	got := tr.Deliver(context.Background(), job)
	<-done
	for i, want := range []delivery.Class{delivery.Temporary, delivery.Permanent, delivery.Temporary} {
		if got[i].Class != want {
			t.Errorf("result %d = %+v, want class %v", i, got[i], want)
		}
	}
	wantLost := "connection to 127.0.0.1 [" + ln.Addr().String() + "] lost: "
	for _, i := range []int{0, 2} {
		if got[i].Code != 451 || got[i].Enhanced != (sdk.EnhancedCode{4, 4, 2}) || !strings.HasPrefix(got[i].Text, wantLost) || got[i].RemoteMTA != "[127.0.0.1]" {
			t.Errorf("result %d = %+v, want 451 4.4.2 %q…", i, got[i], wantLost)
		}
	}
	if got[1].Text != "550 5.1.1 No such user" {
		t.Errorf("result 1 text = %q, want the 550 reply", got[1].Text)
	}
	if n := tr.Idle(); n != 0 {
		t.Errorf("Idle() = %d after a lost connection, want 0", n)
	}
}

func TestSMTPUTF8Unsupported(t *testing.T) {
	ln := listenLoopback(t)
	done := scriptedServer(t, ln, `
S: 220 mx.test ESMTP
C: EHLO gw.test
S: 250-mx.test
S: 250-PIPELINING
S: 250 8BITMIME
C: QUIT
S: 221 2.0.0 Bye`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	job, _ := newTestJob(delivery.Route{Via: ln.Addr().String(), TLS: delivery.TLSNone}, smtpTestBody, "bjørn@example.test", "carol@example.test")
	job.Envelope.SMTPUTF8 = true
	got := tr.Deliver(context.Background(), job)
	r := delivery.Result{Class: delivery.Permanent, Code: 553, Enhanced: sdk.EnhancedCode{5, 6, 7},
		Text: "SMTPUTF8 required but not supported by 127.0.0.1 [" + ln.Addr().String() + "]", RemoteMTA: "[127.0.0.1]"}
	if diff := cmp.Diff([]delivery.Result{r, r}, got, ignoreTLSPolicy); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	// Nothing was sent: the connection stays in the pool, and Close quits it.
	if n := tr.Idle(); n != 1 {
		t.Errorf("Idle() = %d, want 1", n)
	}
	tr.Close()
	<-done
}

func TestSMTPMessageTooBig(t *testing.T) {
	m := startTestMTA(t, testMTAConfig{mod: func(o *smtp.Options) { o.Listener.MaxMessageSize = 40 }})
	job, opens := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test")
	got := newSMTPTransport(t, delivery.SMTPOptions{}).Deliver(context.Background(), job)
	want := []delivery.Result{{Class: delivery.Permanent, Code: 552, Enhanced: sdk.EnhancedCode{5, 3, 4},
		Text: "message too big for 127.0.0.1 [" + m.addr + "]: " + strconv.Itoa(len(smtpTestBody)) + " bytes, its limit is 40", RemoteMTA: "[127.0.0.1]"}}
	if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
		t.Errorf("Deliver (-want +got):\n%s", diff)
	}
	if n := opens.Load(); n != 0 {
		t.Errorf("Open called %d times, want 0", n)
	}
	checkSpooled(t, m)
}

// TestSMTPRouteErrors: what DNS says decides the class when no exchanger
// can be tried.
func TestSMTPRouteErrors(t *testing.T) {
	const zone = `
nullmx.test.      IN MX 0 .
nomx.test.        IN TXT "no mail here"
badmx.test.       IN MX 10 missing.badmx.test.
broken.test.      IN MX 10 mx.broken.test.
mx.broken.test.   IN A 127.0.0.1
servfail.test.    IN MX 10 mx.broken.test.
mxfail.test.      IN MX 10 mx.mxfail.test.
mx.mxfail.test.   IN A 127.0.0.1
test.             IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
`
	r, dnsSrv := newTestResolver(t, zone)
	dnsSrv.SetFault("servfail.test.", dns.TypeMX, resolvertest.ServFail)
	dnsSrv.SetFault("mx.mxfail.test.", dns.TypeNone, resolvertest.ServFail)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: 1})
	for _, tc := range []struct {
		domain  string
		class   delivery.Class
		code    int
		status  sdk.EnhancedCode
		textPfx string
	}{
		{"nullmx.test", delivery.Permanent, 556, sdk.EnhancedCode{5, 1, 10}, "null MX: nullmx.test accepts no mail (RFC 7505)"},
		{"nxdomain.test", delivery.Permanent, 550, sdk.EnhancedCode{5, 1, 2}, "domain not found: "},
		{"nomx.test", delivery.Permanent, 550, sdk.EnhancedCode{5, 4, 4}, "no route: "},
		{"badmx.test", delivery.Permanent, 550, sdk.EnhancedCode{5, 4, 4}, "no route: no exchanger of badmx.test has an address"},
		{"servfail.test", delivery.Temporary, 451, sdk.EnhancedCode{4, 4, 3}, "DNS look-up failed: "},
		{"mxfail.test", delivery.Temporary, 451, sdk.EnhancedCode{4, 4, 3}, "DNS look-up failed: "},
		{"[300.0.0.1]", delivery.Permanent, 550, sdk.EnhancedCode{5, 1, 2}, "bad address literal [300.0.0.1]"},
		{"[IPv6:127.0.0.1]", delivery.Permanent, 550, sdk.EnhancedCode{5, 1, 2}, "bad address literal [ipv6:127.0.0.1]"}, // Job.Domain is lower case,
	} {
		t.Run(tc.domain, func(t *testing.T) {
			job, _ := newTestJob(delivery.Route{TLS: delivery.TLSNone}, smtpTestBody, "bob@"+tc.domain, "carol@"+tc.domain)
			got := tr.Deliver(context.Background(), job)
			if len(got) != 2 {
				t.Fatalf("Deliver returned %d results, want 2", len(got))
			}
			for i, r := range got {
				if r.Class != tc.class || r.Code != tc.code || r.Enhanced != tc.status || !strings.HasPrefix(r.Text, tc.textPfx) || r.RemoteMTA != "" {
					t.Errorf("result %d = %+v; want %v %d %v %q…", i, r, tc.class, tc.code, tc.status, tc.textPfx)
				}
			}
		})
	}
}

// TestSMTPMX: preference order, fail-over to the next exchanger, implicit
// MX and domain literals, all on one port: the exchangers differ by
// loopback address (127.0.0.2 has nobody listening).
func TestSMTPMX(t *testing.T) {
	primary := startTestMTA(t, testMTAConfig{})
	port := primary.port
	secondary := startTestMTA(t, testMTAConfig{listen: "127.0.0.3:" + strconv.Itoa(port)})
	r, _ := newTestResolver(t, `
order.test.        IN MX 10 mx1.order.test.
order.test.        IN MX 20 mx2.order.test.
mx1.order.test.    IN A 127.0.0.1
mx2.order.test.    IN A 127.0.0.3
reverse.test.      IN MX 20 mx1.order.test.
reverse.test.      IN MX 5 mx2.order.test.
failover.test.     IN MX 10 mx1.failover.test.
failover.test.     IN MX 20 mx2.failover.test.
mx1.failover.test. IN A 127.0.0.2
mx2.failover.test. IN A 127.0.0.1
noaddr.test.       IN MX 10 mx0.noaddr.test.
noaddr.test.       IN MX 20 mx1.order.test.
implicit.test.     IN A 127.0.0.3
test.              IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
`)
	for _, tc := range []struct {
		domain string
		remote string
		got    *testMTA
	}{
		{"order.test", "mx1.order.test", primary},
		{"reverse.test", "mx2.order.test", secondary},
		{"failover.test", "mx2.failover.test", primary},
		{"noaddr.test", "mx1.order.test", primary},
		{"implicit.test", "implicit.test", secondary},
		{"[127.0.0.3]", "[127.0.0.3]", secondary},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: port})
			before := [2]int{len(primary.spool.Messages()), len(secondary.spool.Messages())}
			job, _ := newTestJob(delivery.Route{TLS: delivery.TLSNone}, smtpTestBody, "bob@"+tc.domain)
			got := tr.Deliver(context.Background(), job)
			if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].RemoteMTA != tc.remote {
				t.Errorf("Deliver = %+v, want delivered by %s", got, tc.remote)
			}
			after := [2]int{len(primary.spool.Messages()), len(secondary.spool.Messages())}
			want := before
			if tc.got == primary {
				want[0]++
			} else {
				want[1]++
			}
			if after != want {
				t.Errorf("messages spooled (primary, secondary) = %v, want %v", after, want)
			}
		})
	}
}

// TestSMTPPoolKeepsPreference: an idle connection to MX 20 does not take
// mail away from MX 10 while MX 10 answers (issue 10); it is used when MX
// 10 is down.
func TestSMTPPoolKeepsPreference(t *testing.T) {
	primary := startTestMTA(t, testMTAConfig{})
	port := primary.port
	secondary := startTestMTA(t, testMTAConfig{listen: "127.0.0.3:" + strconv.Itoa(port)})
	r, _ := newTestResolver(t, `
pref.test.      IN MX 10 mx1.pref.test.
pref.test.      IN MX 20 mx2.pref.test.
warm.test.      IN MX 10 mx2.pref.test.
down.test.      IN MX 10 mx0.down.test.
down.test.      IN MX 20 mx2.pref.test.
mx0.down.test.  IN A 127.0.0.2
mx1.pref.test.  IN A 127.0.0.1
mx2.pref.test.  IN A 127.0.0.3
`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: port, MaxIdle: time.Minute})
	for _, tc := range []struct {
		domain string
		remote string
	}{
		{"warm.test", "mx2.pref.test"}, // leaves an idle connection to MX 20 of pref.test
		{"pref.test", "mx1.pref.test"},
		{"down.test", "mx2.pref.test"}, // MX 10 refuses: the pooled connection to MX 20 serves
	} {
		job, _ := newTestJob(delivery.Route{TLS: delivery.TLSNone}, smtpTestBody, "bob@"+tc.domain)
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].RemoteMTA != tc.remote {
			t.Errorf("%s: Deliver = %+v, want delivered by %s", tc.domain, got, tc.remote)
		}
	}
	if p, s := len(primary.spool.Messages()), len(secondary.spool.Messages()); p != 1 || s != 2 {
		t.Errorf("messages spooled by MX 10, MX 20 = %d, %d; want 1, 2", p, s)
	}
	if n := secondary.count(sdk.StageConnect); n != 1 {
		t.Errorf("MX 20 saw %d connections, want 1 (reused)", n)
	}
}

// TestSMTPSelfMX: an exchanger that is this gateway (SMTPOptions.Self, or
// named like Hostname) is dropped with every less or equally preferred
// one (RFC 5321 §5.1): a backup MX waits for the primary, and the best MX
// of a domain without a route defers with 4.4.6 (issue 10). The gateway is
// the server on 127.0.0.3; the other 127.0.0.x are other hosts.
func TestSMTPSelfMX(t *testing.T) {
	other := startTestMTA(t, testMTAConfig{})
	port := other.port
	us := startTestMTA(t, testMTAConfig{listen: "127.0.0.3:" + strconv.Itoa(port)})
	r, _ := newTestResolver(t, `
backup.test.   IN MX 10 mx0.down.test.
backup.test.   IN MX 20 gw.backup.test.
up.test.       IN MX 10 mx.up.test.
up.test.       IN MX 20 gw.backup.test.
best.test.     IN MX 10 gw.backup.test.
best.test.     IN MX 20 mx.up.test.
equal.test.    IN MX 10 mx.up.test.
equal.test.    IN MX 10 gw.backup.test.
named.test.    IN MX 10 gw.test.
implicit.test. IN A 127.0.0.3
mx0.down.test. IN A 127.0.0.2
mx.up.test.    IN A 127.0.0.1
gw.backup.test. IN A 127.0.0.3
gw.test.       IN A 127.0.0.1
`)
	at := func(ip string, port int) []netip.AddrPort {
		return []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port))}
	}
	self := at("127.0.0.3", port)
	const loop = "451 4.4.6"
	for _, tc := range []struct {
		domain string
		self   []netip.AddrPort
		want   string // the result's remote MTA, or "451 4.x.x" for a deferral
	}{
		{"backup.test", self, "451 4.4.1"}, // MX 10 down: wait, do not take it ourselves
		{"up.test", self, "mx.up.test"},
		{"best.test", self, loop},
		{"equal.test", self, loop},
		{"implicit.test", self, loop},
		{"named.test", nil, loop},                                // by the hostname gw.test
		{"best.test", at("127.0.0.3", port+1), "gw.backup.test"}, // another port: not us
		{"best.test", at("127.0.0.3", 0), loop},                  // a proxy address: any port
		{"backup.test", at("0.0.0.0", port), loop},               // a wildcard listener has all of 127/8
		{"best.test", nil, "gw.backup.test"},                     // nothing known about ourselves
	} {
		ours := func() []netip.AddrPort { return tc.self }
		tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: port, Self: ours, MaxIdle: -1})
		job, _ := newTestJob(delivery.Route{TLS: delivery.TLSNone}, smtpTestBody, "bob@"+tc.domain)
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 {
			t.Fatalf("%s: %d results", tc.domain, len(got))
		}
		code := fmt.Sprintf("%d %s", got[0].Code, got[0].Enhanced)
		if strings.HasPrefix(tc.want, "451") {
			if got[0].Class != delivery.Temporary || code != tc.want {
				t.Errorf("%s (self %v): %+v, want deferred %s", tc.domain, tc.self, got[0], tc.want)
			}
			if tc.want == loop && !strings.Contains(got[0].Text, "needs a route") {
				t.Errorf("%s: text %q does not say the domain needs a route", tc.domain, got[0].Text)
			}
		} else if got[0].Class != delivery.Delivered || got[0].RemoteMTA != tc.want {
			t.Errorf("%s (self %v): %+v, want delivered by %s", tc.domain, tc.self, got[0], tc.want)
		}
	}
	if o, u := len(other.spool.Messages()), len(us.spool.Messages()); o != 1 || u != 2 {
		t.Errorf("messages to the other host, to us = %d, %d; want 1, 2 (only where we were not told who we are)", o, u)
	}
}

// TestSMTPAllExchangersFail: refused connections everywhere end in the
// last failure, Temporary 4.4.1.
func TestSMTPAllExchangersFail(t *testing.T) {
	ln := listenLoopback(t) // reserve a port nobody answers on 127.0.0.2
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r, _ := newTestResolver(t, `
down.test.      IN MX 10 mx1.down.test.
down.test.      IN MX 20 mx2.down.test.
mx1.down.test.  IN A 127.0.0.2
mx2.down.test.  IN A 127.0.0.2
`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: port})
	job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@down.test")
	got := tr.Deliver(context.Background(), job)
	want := "connection failed: mx2.down.test [127.0.0.2:" + strconv.Itoa(port) + "]: "
	if len(got) != 1 || got[0].Class != delivery.Temporary || got[0].Code != 451 || got[0].Enhanced != (sdk.EnhancedCode{4, 4, 1}) || !strings.HasPrefix(got[0].Text, want) {
		t.Errorf("Deliver = %+v, want Temporary 451 4.4.1 %q…", got, want)
	}
}

// TestSMTPDeadAddress: after a refused connect, jobs to that address within
// DeadAddressTTL defer without dialling it; after the TTL it is tried again,
// and a negative TTL never suspends.
func TestSMTPDeadAddress(t *testing.T) {
	ln := listenLoopback(t)
	addr := ln.Addr().String()
	ln.Close()
	route := delivery.Route{Transport: "smtp", Via: addr}
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want []bool // per job: suspended (not dialled)
	}{
		{"suspended within the TTL", time.Hour, []bool{false, true, true}},
		{"off", -1, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newSMTPTransport(t, delivery.SMTPOptions{DeadAddressTTL: tc.ttl})
			for i, suspended := range tc.want {
				job, _ := newTestJob(route, smtpTestBody, "bob@example.test")
				got := tr.Deliver(context.Background(), job)
				if len(got) != 1 || got[0].Class != delivery.Temporary || got[0].Code != 451 || !strings.HasPrefix(got[0].Text, "connection failed: ") {
					t.Fatalf("job %d: %+v, want Temporary 451 connection failed", i, got)
				}
				if s := strings.Contains(got[0].Text, "suspended"); s != suspended {
					t.Errorf("job %d: %q: suspended %v, want %v", i, got[0].Text, s, suspended)
				}
			}
		})
	}
	t.Run("forgotten for its domain", func(t *testing.T) {
		tr := newSMTPTransport(t, delivery.SMTPOptions{DeadAddressTTL: time.Hour})
		job, _ := newTestJob(route, smtpTestBody, "bob@example.test")
		tr.Deliver(context.Background(), job)
		for _, tc := range []struct {
			forget    string
			suspended bool
		}{{"other.test", true}, {"example.test", false}, {"", false}} {
			tr.ForgetDead(tc.forget)
			got := tr.Deliver(context.Background(), job)
			if len(got) != 1 || strings.Contains(got[0].Text, "suspended") != tc.suspended {
				t.Errorf("after ForgetDead(%q): %+v, want suspended %v", tc.forget, got, tc.suspended)
			}
		}
	})
	t.Run("tried again after the TTL", func(t *testing.T) {
		tr := newSMTPTransport(t, delivery.SMTPOptions{DeadAddressTTL: 50 * time.Millisecond})
		job, _ := newTestJob(route, smtpTestBody, "bob@example.test")
		tr.Deliver(context.Background(), job)
		time.Sleep(80 * time.Millisecond)
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 || strings.Contains(got[0].Text, "suspended") {
			t.Errorf("after the TTL: %+v, want a fresh connect failure", got)
		}
	})
}

// TestSMTPGreetingRefused: a 4xx or 5xx greeting sends the job to the next
// address; when it was the last, the result is Temporary with the reply.
func TestSMTPGreetingRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    sdk.Decision
		want delivery.Result
	}{
		{"421", sdk.DeferDecision(421, sdk.EnhancedCode{4, 7, 0}, "Busy"),
			delivery.Result{Class: delivery.Temporary, Code: 421, Enhanced: sdk.EnhancedCode{4, 7, 0}, Text: "421 4.7.0 Busy", RemoteMTA: "[127.0.0.1]"}},
		{"554", sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "Go away"),
			delivery.Result{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 7, 1}, Text: "554 5.7.1 Go away", RemoteMTA: "[127.0.0.1]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startTestMTA(t, testMTAConfig{hook: func(req *hook.Request) sdk.Decision {
				if req.Stage == sdk.StageConnect {
					return tc.d
				}
				return sdk.Decision{}
			}})
			job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test")
			got := newSMTPTransport(t, delivery.SMTPOptions{}).Deliver(context.Background(), job)
			if diff := cmp.Diff([]delivery.Result{tc.want}, got, ignoreTLSPolicy); diff != "" {
				t.Errorf("Deliver (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("next MX", func(t *testing.T) {
		refusing := startTestMTA(t, testMTAConfig{hook: func(req *hook.Request) sdk.Decision {
			if req.Stage == sdk.StageConnect {
				return sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "Go away")
			}
			return sdk.Decision{}
		}})
		good := startTestMTA(t, testMTAConfig{listen: "127.0.0.3:" + strconv.Itoa(refusing.port)})
		r, _ := newTestResolver(t, `
example.test.     IN MX 10 mx1.example.test.
example.test.     IN MX 20 mx2.example.test.
mx1.example.test. IN A 127.0.0.1
mx2.example.test. IN A 127.0.0.3
`)
		job, _ := newTestJob(delivery.Route{TLS: delivery.TLSNone}, smtpTestBody, "bob@example.test")
		got := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: refusing.port}).Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].RemoteMTA != "mx2.example.test" {
			t.Errorf("Deliver = %+v, want delivered by mx2.example.test", got)
		}
		checkSpooled(t, good, []string{"bob@example.test"})
	})
}

// TestSMTPStaticRouteByName: Via names a host, looked up with our resolver.
func TestSMTPStaticRouteByName(t *testing.T) {
	m := startTestMTA(t, testMTAConfig{})
	r, _ := newTestResolver(t, `
relay.test. IN A 127.0.0.1
test.       IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r})
	job, _ := newTestJob(delivery.Route{Via: "relay.test:" + strconv.Itoa(m.port), TLS: delivery.TLSNone}, smtpTestBody, "bob@elsewhere.example")
	got := tr.Deliver(context.Background(), job)
	if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].RemoteMTA != "relay.test" {
		t.Errorf("Deliver = %+v, want delivered by relay.test", got)
	}
	checkSpooled(t, m, []string{"bob@elsewhere.example"})

	// A route whose host does not resolve waits for the configuration to be
	// fixed: Temporary, not a bounce.
	job, _ = newTestJob(delivery.Route{Via: "missing.test:25"}, smtpTestBody, "bob@elsewhere.example")
	got = tr.Deliver(context.Background(), job)
	if len(got) != 1 || got[0].Class != delivery.Temporary || got[0].Enhanced != (sdk.EnhancedCode{4, 4, 3}) {
		t.Errorf("Deliver via missing.test = %+v, want Temporary 4.4.3", got)
	}
}

func TestSMTPTLS(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	withTLS := func(o *smtp.Options) { o.TLS = serverTLS }
	trusting := func(host string) *tls.Config { return clientTLS.Clone() }

	t.Run("require without STARTTLS", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{TLSConfig: trusting})
		job, opens := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSRequire}, smtpTestBody, "bob@example.test")
		got := tr.Deliver(context.Background(), job)
		want := []delivery.Result{{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 7, 5},
			Text: "TLS required but not available: 127.0.0.1 [" + m.addr + "] does not offer STARTTLS", RemoteMTA: "[127.0.0.1]", Local: true,
			TLSPolicy: delivery.TLSRequire}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Deliver (-want +got):\n%s", diff)
		}
		if opens.Load() != 0 || len(m.spool.Messages()) != 0 {
			t.Errorf("message opened %d times, spooled %d; want neither", opens.Load(), len(m.spool.Messages()))
		}
		m.waitCount(t, sdk.StageDisconnect, 1) // the session was ended with QUIT
	})
	for _, policy := range []string{delivery.TLSOpportunistic, "", delivery.TLSRequire} {
		t.Run("policy "+strconv.Quote(policy), func(t *testing.T) {
			m := startTestMTA(t, testMTAConfig{mod: withTLS})
			tr := newSMTPTransport(t, delivery.SMTPOptions{TLSConfig: trusting})
			job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: policy}, smtpTestBody, "bob@example.test")
			got := tr.Deliver(context.Background(), job)
			level := policy
			if level == "" {
				level = delivery.TLSOpportunistic
			}
			if len(got) != 1 || got[0].Class != delivery.Delivered || got[0].TLSPolicy != level {
				t.Errorf("Deliver = %+v, want delivered under %s", got, level)
			}
			if msgs := checkSpooled(t, m, []string{"bob@example.test"}); !msgs[0].Envelope.TLS {
				t.Errorf("server received the message without TLS")
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: withTLS})
		tr := newSMTPTransport(t, delivery.SMTPOptions{TLSConfig: trusting})
		job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test")
		tr.Deliver(context.Background(), job)
		if msgs := checkSpooled(t, m, []string{"bob@example.test"}); msgs[0].Envelope.TLS {
			t.Errorf("server received the message over TLS with policy none")
		}
	})
	t.Run("opportunistic default config skips verification", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: withTLS})
		tr := newSMTPTransport(t, delivery.SMTPOptions{}) // the test certificate is not trusted
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSOpportunistic}, smtpTestBody, "bob@example.test")
		tr.Deliver(context.Background(), job)
		if msgs := checkSpooled(t, m, []string{"bob@example.test"}); !msgs[0].Envelope.TLS {
			t.Errorf("server received the message without TLS")
		}
	})
	t.Run("opportunistic handshake failure falls back to clear text", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: withTLS})
		untrusting := func(host string) *tls.Config { return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12} }
		tr := newSMTPTransport(t, delivery.SMTPOptions{TLSConfig: untrusting})
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSOpportunistic}, smtpTestBody, "bob@example.test")
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Delivered {
			t.Errorf("Deliver = %+v, want delivered", got)
		}
		if msgs := checkSpooled(t, m, []string{"bob@example.test"}); msgs[0].Envelope.TLS {
			t.Errorf("server received the message over TLS, want the clear-text retry")
		}
		if n := m.count(sdk.StageConnect); n != 2 {
			t.Errorf("server saw %d connections, want 2 (TLS attempt, clear-text retry)", n)
		}
	})
	// Postfix's level names (issue 12): encrypt takes any certificate but
	// not clear text; verify is require.
	t.Run("encrypt with an untrusted certificate", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: withTLS})
		tr := newSMTPTransport(t, delivery.SMTPOptions{}) // the test certificate is not trusted
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSEncrypt}, smtpTestBody, "bob@example.test")
		if got := tr.Deliver(context.Background(), job); len(got) != 1 || got[0].Class != delivery.Delivered {
			t.Errorf("Deliver = %+v, want delivered", got)
		}
		if msgs := checkSpooled(t, m, []string{"bob@example.test"}); !msgs[0].Envelope.TLS {
			t.Errorf("server received the message without TLS")
		}
	})
	t.Run("encrypt without STARTTLS", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{})
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSEncrypt}, smtpTestBody, "bob@example.test")
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Temporary || got[0].Enhanced != (sdk.EnhancedCode{4, 7, 5}) {
			t.Errorf("Deliver = %+v, want Temporary 4.7.5", got)
		}
		checkSpooled(t, m)
	})
	t.Run("verify with an untrusted certificate", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: withTLS})
		tr := newSMTPTransport(t, delivery.SMTPOptions{})
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSVerify}, smtpTestBody, "bob@example.test")
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Temporary || got[0].Enhanced != (sdk.EnhancedCode{4, 7, 5}) {
			t.Errorf("Deliver = %+v, want Temporary 4.7.5", got)
		}
		checkSpooled(t, m)
	})
	t.Run("require with a failing handshake", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{mod: withTLS})
		untrusting := func(host string) *tls.Config { return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12} }
		tr := newSMTPTransport(t, delivery.SMTPOptions{TLSConfig: untrusting})
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSRequire}, smtpTestBody, "bob@example.test")
		got := tr.Deliver(context.Background(), job)
		if len(got) != 1 || got[0].Class != delivery.Temporary || got[0].Enhanced != (sdk.EnhancedCode{4, 7, 5}) {
			t.Errorf("Deliver = %+v, want Temporary 4.7.5", got)
		}
		checkSpooled(t, m)
	})
}

// TestSMTPConnectionReuse: jobs to one destination share a connection; the
// pool honours MaxPerConn, MaxIdle and Close.
func TestSMTPConnectionReuse(t *testing.T) {
	deliverN := func(t *testing.T, tr *delivery.SMTP, m *testMTA, n int) {
		t.Helper()
		for i := range n {
			job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test")
			if got := tr.Deliver(context.Background(), job); len(got) != 1 || got[0].Class != delivery.Delivered {
				t.Fatalf("job %d: Deliver = %+v, want delivered", i, got)
			}
		}
	}
	t.Run("three jobs one connection", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: time.Minute})
		deliverN(t, tr, m, 3)
		if n := m.count(sdk.StageConnect); n != 1 {
			t.Errorf("server saw %d connections, want 1", n)
		}
		if n := len(m.spool.Messages()); n != 3 {
			t.Errorf("server spooled %d messages, want 3", n)
		}
		if n := tr.Idle(); n != 1 {
			t.Errorf("Idle() = %d, want 1", n)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		m.waitCount(t, sdk.StageDisconnect, 1)
		if n := tr.Idle(); n != 0 {
			t.Errorf("Idle() after Close = %d, want 0", n)
		}
		if err := tr.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		// After Close a job still goes out, on a connection of its own.
		deliverN(t, tr, m, 1)
		m.waitCount(t, sdk.StageDisconnect, 2)
		if n := tr.Idle(); n != 0 {
			t.Errorf("Idle() after a job after Close = %d, want 0", n)
		}
	})
	t.Run("MaxPerConn", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: time.Minute, MaxPerConn: 2})
		deliverN(t, tr, m, 5)
		if n := m.count(sdk.StageConnect); n != 3 {
			t.Errorf("server saw %d connections, want 3", n)
		}
		m.waitCount(t, sdk.StageDisconnect, 2)
	})
	t.Run("no reuse", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: -1})
		deliverN(t, tr, m, 2)
		if n := m.count(sdk.StageConnect); n != 2 {
			t.Errorf("server saw %d connections, want 2", n)
		}
		m.waitCount(t, sdk.StageDisconnect, 2)
	})
	t.Run("idle expiry", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: 100 * time.Millisecond})
		deliverN(t, tr, m, 1)
		m.waitCount(t, sdk.StageDisconnect, 1) // the reaper sent QUIT
		if n := tr.Idle(); n != 0 {
			t.Errorf("Idle() = %d after expiry, want 0", n)
		}
		deliverN(t, tr, m, 1)
		if n := m.count(sdk.StageConnect); n != 2 {
			t.Errorf("server saw %d connections, want 2", n)
		}
	})
	t.Run("dead pooled connection", func(t *testing.T) {
		// The server drops idle sessions after 100ms; the transport keeps
		// them for a minute, finds the pooled one dead and dials again.
		m := startTestMTA(t, testMTAConfig{mod: func(o *smtp.Options) { o.Listener.Timeouts.Command = 100 * time.Millisecond }})
		tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: time.Minute})
		deliverN(t, tr, m, 1)
		m.waitCount(t, sdk.StageDisconnect, 1)
		deliverN(t, tr, m, 1)
		if n := m.count(sdk.StageConnect); n != 2 {
			t.Errorf("server saw %d connections, want 2", n)
		}
		if n := len(m.spool.Messages()); n != 2 {
			t.Errorf("server spooled %d messages, want 2", n)
		}
	})
	t.Run("policy is part of the key", func(t *testing.T) {
		m := startTestMTA(t, testMTAConfig{})
		tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: time.Minute})
		deliverN(t, tr, m, 1)
		job, _ := newTestJob(delivery.Route{Via: m.addr, TLS: delivery.TLSOpportunistic}, smtpTestBody, "bob@example.test")
		tr.Deliver(context.Background(), job)
		if n := m.count(sdk.StageConnect); n != 2 {
			t.Errorf("server saw %d connections, want 2", n)
		}
		if n := tr.Idle(); n != 2 {
			t.Errorf("Idle() = %d, want 2", n)
		}
	})
}

// TestSMTPConcurrentJobs: jobs in parallel each get a working connection;
// none is shared (run with -race).
func TestSMTPConcurrentJobs(t *testing.T) {
	m := startTestMTA(t, testMTAConfig{})
	tr := newSMTPTransport(t, delivery.SMTPOptions{MaxIdle: time.Minute})
	const n = 8
	results := make(chan []delivery.Result, n)
	for range n {
		go func() {
			job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test")
			results <- tr.Deliver(context.Background(), job)
		}()
	}
	for range n {
		if got := <-results; len(got) != 1 || got[0].Class != delivery.Delivered {
			t.Errorf("Deliver = %+v, want delivered", got)
		}
	}
	if got := len(m.spool.Messages()); got != n {
		t.Errorf("server spooled %d messages, want %d", got, n)
	}
	if c, idle := m.count(sdk.StageConnect), tr.Idle(); idle != c {
		t.Errorf("server saw %d connections, %d idle; want every one pooled", c, idle)
	}
}

func TestSMTPBadRoute(t *testing.T) {
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	for _, tc := range []struct {
		route delivery.Route
		text  string
	}{
		{delivery.Route{Via: "127.0.0.1:1", TLS: "sometimes"}, `unknown TLS policy "sometimes"`},
		{delivery.Route{Via: "127.0.0.1:x"}, `delivery: bad route "127.0.0.1:x": want host:port`},
	} {
		job, _ := newTestJob(tc.route, smtpTestBody, "bob@example.test")
		got := tr.Deliver(context.Background(), job)
		want := []delivery.Result{{Class: delivery.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 5}, Text: tc.text, Local: true}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Deliver with %+v (-want +got):\n%s", tc.route, diff)
		}
	}
}

// TestSMTPContextDone: a cancelled attempt is Temporary for everyone.
func TestSMTPContextDone(t *testing.T) {
	m := startTestMTA(t, testMTAConfig{})
	tr := newSMTPTransport(t, delivery.SMTPOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	job, _ := newTestJob(viaMTA(m), smtpTestBody, "bob@example.test", "carol@example.test")
	got := tr.Deliver(ctx, job)
	if len(got) != 2 || got[0].Class != delivery.Temporary || got[1].Class != delivery.Temporary {
		t.Errorf("Deliver = %+v, want two Temporary results", got)
	}
	checkSpooled(t, m)
}

// handoffScript is a session that takes one message for bob@example.test,
// whose EHLO (or LHLO) reply offers ext; %s are the DSN parameters
// expected on MAIL and RCPT.
const handoffScript = `
S: 220 mx.test ESMTP
C: %s gw.test
S: 250-mx.test
S: 250 %s
C: MAIL FROM:<alice@sender.test>%s
S: 250 2.1.0 Ok
C: RCPT TO:<bob@example.test>%s
S: 250 2.1.5 Ok
C: DATA
S: 354 Go ahead
C: From: alice@sender.test
C: Subject: hi
C:
C: ..dotted line
C: bye
C: .
S: 250 2.0.0 Ok: queued as X1
C: QUIT
S: 221 2.0.0 Bye`

// handoffJob is the job handoffScript takes: NOTIFY=SUCCESS, an ORCPT, an
// ENVID and RET=HDRS.
func handoffJob(route delivery.Route) *delivery.Job {
	job, _ := newTestJob(route, smtpTestBody, "bob@example.test")
	job.Envelope.EnvID, job.Envelope.Ret = "env1", envelope.RetHdrs
	job.Recipients[0].Notify = envelope.NotifySuccess
	job.Recipients[0].ORCPT = "rfc822;bob@example.test"
	return job
}

// TestSMTPHandoff: a next hop that offers DSN gets NOTIFY, ORCPT, ENVID
// and RET, and the result says the success DSN is its to send; one that
// does not gets none of them, and the result says relayed (RFC 3461
// §6.2.3).
func TestSMTPHandoff(t *testing.T) {
	tests := []struct {
		name, ext, mail, rcpt string
		want                  delivery.Handoff
	}{
		{"DSN", "DSN", " RET=HDRS ENVID=env1", " NOTIFY=SUCCESS ORCPT=rfc822;bob@example.test", delivery.HandoffDSN},
		{"no DSN", "8BITMIME", "", "", delivery.HandoffRelayed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listenLoopback(t)
			done := scriptedServer(t, ln, fmt.Sprintf(handoffScript, "EHLO", tt.ext, tt.mail, tt.rcpt))
			tr := newSMTPTransport(t, delivery.SMTPOptions{})
			got := tr.Deliver(context.Background(), handoffJob(delivery.Route{Via: ln.Addr().String(), TLS: delivery.TLSNone}))
			tr.Close()
			<-done
			want := []delivery.Result{{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0},
				Text: "250 2.0.0 Ok: queued as X1", RemoteMTA: "[127.0.0.1]", Handoff: tt.want}}
			if diff := cmp.Diff(want, got, ignoreTLSPolicy); diff != "" {
				t.Errorf("Deliver (-want +got):\n%s", diff)
			}
		})
	}
}
