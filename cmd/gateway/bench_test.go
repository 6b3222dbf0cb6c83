package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

func TestBench(t *testing.T) {
	addr, stop := startSink(t)
	for _, tc := range []struct {
		args     []string
		messages int64
	}{
		{[]string{"--messages", "300", "--concurrency", "4", "--size", "1500", "--rcpts", "2"}, 300},
		{[]string{"--messages", "20", "--concurrency", "30", "--size", "1500", "--pipelining=false"}, 20},
	} {
		code, out, errOut := runWithInput(t, "", append([]string{"bench", "--server", addr, "--json"}, tc.args...)...)
		if code != 0 {
			t.Fatalf("bench %q: code %d, stderr %q, stdout %q", tc.args, code, errOut, out)
		}
		var rep benchReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("bench --json printed %q: %v", out, err)
		}
		if rep.Messages != tc.messages || rep.Failures != 0 || rep.MessagesPerSecond <= 0 ||
			rep.LatencyMaxms < rep.LatencyP50ms || rep.CPUSeconds <= 0 {
			t.Errorf("bench %q report %+v", tc.args, rep)
		}
	}
	if got, want := sinkTotals(t, stop()), "messages=320 bytes=480000"; got != want {
		t.Errorf("sink totals %q, want %q", got, want)
	}
}

func TestBenchFailures(t *testing.T) {
	addr, _ := startSink(t, "--rcpt-reply", "550 5.1.1 No such user")
	code, out, _ := runWithInput(t, "", "bench", "--server", addr, "--json", "--messages", "10", "--concurrency", "2")
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if code != 1 || rep.Messages != 0 || rep.Failures != 10 ||
		len(rep.FailureReplies) != 1 || rep.FailureReplies[0] != "550 5.1.1 No such user" {
		t.Errorf("bench: code %d, report %+v; want 1 and 10 failures with the 550 reply", code, rep)
	}

	code, out, _ = runWithInput(t, "", "bench", "--server", addr, "--json", "--mode", "smtp-source", "--messages", "4", "--concurrency", "2")
	rep = benchReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if want := "RCPT: smtp: 550 5.1.1 No such user"; code != 1 || rep.Messages != 0 || rep.Failures != 4 ||
		fmt.Sprint(rep.FailureReplies) != "["+want+"]" {
		t.Errorf("bench --mode smtp-source: code %d, report %+v; want 1 and 4 failures with %q", code, rep, want)
	}

	// Nobody listening: every message fails, bench still ends.
	for _, mode := range []string{benchModeReuse, benchModeSource} {
		code, out, _ = runWithInput(t, "", "bench", "--server", "127.0.0.1:1", "--mode", mode, "--messages", "3", "--concurrency", "2")
		if code != 1 || !strings.Contains(out, "0 sent, 3 failed") {
			t.Errorf("bench --mode %s without a server: code %d, stdout %q", mode, code, out)
		}
	}
}

// TestBenchSMTPSource: in the smtp-source mode the server sees one session
// per message, and each says HELO (not EHLO), sends MAIL, each RCPT and
// DATA, the message, and QUIT.
func TestBenchSMTPSource(t *testing.T) {
	spool := &smtptest.MemorySpool{}
	verbs := &commandLog{}
	addr, _ := smtptest.StartServer(t, smtp.Options{
		RelayNetworks: []netip.Prefix{smtptest.Loopback()}, Hooks: verbs, Spool: spool,
	})
	code, out, errOut := runWithInput(t, "", "bench", "--server", addr, "--json", "--mode", "smtp-source",
		"--messages", "30", "--concurrency", "4", "--size", "1500", "--rcpts", "2", "--helo", "source.test")
	if code != 0 {
		t.Fatalf("bench: code %d, stderr %q, stdout %q", code, errOut, out)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	if rep.Mode != benchModeSource || rep.Messages != 30 || rep.Failures != 0 || rep.MessagesPerSecond <= 0 {
		t.Errorf("bench report %+v, want 30 messages in the smtp-source mode", rep)
	}
	sessions := verbs.sessions()
	if len(sessions) != 30 {
		t.Errorf("server saw %d sessions, want 30", len(sessions))
	}
	for id, v := range sessions {
		if got, want := strings.Join(v, " "), "HELO MAIL RCPT RCPT DATA QUIT"; got != want {
			t.Errorf("session %s: verbs %q, want %q", id, got, want)
		}
	}
	msgs := spool.Messages()
	if len(msgs) != 30 {
		t.Fatalf("server committed %d messages, want 30", len(msgs))
	}
	for _, m := range msgs {
		if m.Envelope.ClientHELO != "source.test" || len(m.Envelope.Recipients) != 2 || len(m.Body) != 1500 {
			t.Errorf("message %s: HELO %q, %d recipients, %d bytes; want source.test, 2 and 1500",
				m.ID, m.Envelope.ClientHELO, len(m.Envelope.Recipients), len(m.Body))
		}
	}
}

// commandLog records the verbs of each session, as the command stage sees
// them.
type commandLog struct {
	mu    sync.Mutex
	verbs map[string][]string // session ID → verbs in order
}

func (l *commandLog) Dispatch(ctx context.Context, req *hook.Request) hook.Result {
	if req.Stage != sdk.StageCommand {
		return hook.Result{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.verbs == nil {
		l.verbs = map[string][]string{}
	}
	l.verbs[req.Session.ID] = append(l.verbs[req.Session.ID], req.Command)
	return hook.Result{}
}

func (l *commandLog) sessions() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.verbs)
}

// TestBenchSTARTTLS: with --starttls every session says EHLO, STARTTLS
// and EHLO again and sends its mail under TLS, in both modes, with a
// full handshake in the first session and a resumed one in every later
// session (the workers share one session cache), unless
// --tls-resume=false, and then none resumes. The server holds every
// session after the first until the first has sent MAIL (ticketGate), so
// that the counts are exact: in the reuse mode the two workers' two
// connections are one full handshake and one resumed.
func TestBenchSTARTTLS(t *testing.T) {
	for _, tc := range []struct {
		mode, resume string
		verbs        string
		sessions     int64 // each with one handshake
		resumed      int64
	}{
		{benchModeSource, "true", "EHLO STARTTLS EHLO MAIL RCPT DATA QUIT", 20, 20 - 1},
		{benchModeSource, "false", "EHLO STARTTLS EHLO MAIL RCPT DATA QUIT", 20, 0},
		// A connection per worker, each sending one or more messages.
		{benchModeReuse, "true", "EHLO STARTTLS EHLO MAIL RCPT DATA (MAIL RCPT DATA )*QUIT", 2, 1},
		{benchModeReuse, "false", "EHLO STARTTLS EHLO MAIL RCPT DATA (MAIL RCPT DATA )*QUIT", 2, 0},
	} {
		t.Run(tc.mode+"/resume="+tc.resume, func(t *testing.T) {
			spool := &smtptest.MemorySpool{}
			verbs := &commandLog{}
			gate := newTicketGate(verbs, 10*time.Second)
			serverTLS, _ := smtptest.TLSConfigs(t)
			var handshakes, resumed atomic.Int64
			serverTLS.VerifyConnection = func(cs tls.ConnectionState) error {
				handshakes.Add(1)
				if cs.DidResume {
					resumed.Add(1)
				}
				return nil
			}
			addr, _ := smtptest.StartServer(t, smtp.Options{
				RelayNetworks: []netip.Prefix{smtptest.Loopback()}, Hooks: gate, Spool: spool, TLS: serverTLS,
			})
			args := []string{"bench", "--server", addr, "--json", "--mode", tc.mode, "--starttls", "--tls-resume=" + tc.resume,
				"--messages", "20", "--concurrency", "2"}
			if tc.mode == benchModeReuse {
				args = append(args, "--messages", "6", "--pipelining=false") // the command stage sees each command
			}
			code, out, errOut := runWithInput(t, "", args...)
			if code != 0 {
				t.Fatalf("bench: code %d, stderr %q, stdout %q", code, errOut, out)
			}
			if gate.timedOut.Load() {
				t.Error("the sessions did not come in the order the counts need: the gate gave up waiting")
			}
			sessions := verbs.sessions()
			want := regexp.MustCompile("^" + tc.verbs + "$")
			for id, v := range sessions {
				if got := strings.Join(v, " "); !want.MatchString(got) {
					t.Errorf("session %s: verbs %q, want %q", id, got, tc.verbs)
				}
			}
			for _, m := range spool.Messages() {
				if !m.Envelope.TLS {
					t.Errorf("message %s was not received under TLS", m.ID)
				}
			}
			n := int64(len(sessions))
			if n != tc.sessions || handshakes.Load() != tc.sessions || resumed.Load() != tc.resumed {
				t.Errorf("%d sessions, %d handshakes, %d resumed; want %d, %d and %d",
					n, handshakes.Load(), resumed.Load(), tc.sessions, tc.sessions, tc.resumed)
			}
		})
	}
}

// ticketGate orders a bench's sessions so that its TLS resumptions can
// be counted exactly: it holds the greeting of every session after the
// first until the first has sent MAIL, and that MAIL until a second
// session has connected. A client sends MAIL only after reading the
// reply to its EHLO under TLS, which comes after the server's session
// ticket, so that every later session starts its handshake with a ticket
// in the client's cache; and in the reuse mode the first worker cannot
// send every message before the second connects. Each wait gives up
// after a bound (timedOut), so that a bench that never connects twice
// fails the test instead of hanging it. Every request then goes on to
// next.
type ticketGate struct {
	next     hook.Dispatcher
	bound    time.Duration
	timedOut atomic.Bool

	connects   atomic.Int64
	firstMail  chan struct{} // closed at the first MAIL
	second     chan struct{} // closed when a second session connects
	mailOnce   sync.Once
	secondOnce sync.Once
}

func newTicketGate(next hook.Dispatcher, bound time.Duration) *ticketGate {
	return &ticketGate{next: next, bound: bound, firstMail: make(chan struct{}), second: make(chan struct{})}
}

func (g *ticketGate) Dispatch(ctx context.Context, req *hook.Request) hook.Result {
	switch req.Stage {
	case sdk.StageConnect:
		if g.connects.Add(1) > 1 {
			g.secondOnce.Do(func() { close(g.second) })
			g.wait(ctx, g.firstMail)
		}
	case sdk.StageMail:
		// The first MAIL is the first session's: the others' greetings
		// wait for it.
		g.mailOnce.Do(func() { close(g.firstMail) })
		g.wait(ctx, g.second)
	}
	return g.next.Dispatch(ctx, req)
}

// wait waits until ch is closed, ctx is done or the gate's bound passes
// (then noting it in timedOut).
func (g *ticketGate) wait(ctx context.Context, ch <-chan struct{}) {
	timer := time.NewTimer(g.bound)
	defer timer.Stop()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-timer.C:
		g.timedOut.Store(true)
	}
}

func TestBenchModeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "smtp-source", "--pipelining=false"}, "--pipelining: the smtp-source mode never pipelines"},
		{[]string{"--mode", "pipelined"}, `--mode "pipelined": want reuse or smtp-source`},
	} {
		code, _, errOut := runWithInput(t, "", append([]string{"bench", "--server", "127.0.0.1:1"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("bench %q: code %d, stderr %q; want 1 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestBenchBody(t *testing.T) {
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	minimum := -1
	for size := 0; size < 400; size++ {
		b, err := benchBody(size, "bench@bench.test", "rcpt1@example.test", now)
		if err != nil {
			continue
		}
		if minimum < 0 {
			minimum = size
		}
		checkBenchBody(t, size, b)
	}
	if minimum < 0 || minimum > 200 {
		t.Fatalf("smallest body %d bytes", minimum)
	}
	for _, size := range []int{2048, 10000, 1 << 20} {
		b, err := benchBody(size, "bench@bench.test", "rcpt1@example.test", now)
		if err != nil {
			t.Fatal(err)
		}
		checkBenchBody(t, size, b)
	}
}

func checkBenchBody(t *testing.T, size int, b []byte) {
	t.Helper()
	if len(b) != size || !bytes.HasSuffix(b, []byte("\r\n")) {
		t.Fatalf("size %d: body of %d bytes, ends %q", size, len(b), b[max(0, len(b)-4):])
	}
	header, body, ok := bytes.Cut(b, []byte("\r\n\r\n"))
	if !ok || !bytes.HasPrefix(header, []byte("From: <bench@bench.test>\r\n")) {
		t.Fatalf("size %d: no header block in %q", size, b)
	}
	for _, l := range bytes.SplitAfter(body, []byte("\r\n")) {
		if len(l) > 78 || bytes.HasPrefix(l, []byte(".")) || bytes.Count(l, []byte("\n")) > 1 {
			t.Fatalf("size %d: bad filler line %q", size, l)
		}
	}
}
