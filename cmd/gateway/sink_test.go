package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// syncBuffer is a writer a command goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var sinkListeningRE = regexp.MustCompile(`(?m)^listening on (\S+)$`)

// startSink runs `gateway sink --listen 127.0.0.1:0 args...` in-process. It
// returns the address and stop, which ends the sink (as SIGINT would) and
// returns everything it printed on stdout; stop also runs at cleanup.
func startSink(t *testing.T, args ...string) (addr string, stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, &cli{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr},
			append([]string{"sink", "--listen", "127.0.0.1:0"}, args...))
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := sinkListeningRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("sink exited with %d before listening; stderr:\n%s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("sink did not start listening; stderr:\n%s", stderr.String())
		}
	}
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("sink exited with %d; stderr:\n%s", code, stderr.String())
			}
		})
		return stdout.String()
	}
	t.Cleanup(func() { stop() })
	return addr, stop
}

// runWithInput runs one command in-process with stdin.
func runWithInput(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = run(context.Background(), &cli{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func sinkTotals(t *testing.T, out string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// TestSinkSave: the saved .eml is the Received header the server adds
// followed by exactly the bytes send sent; the .json has the envelope.
func TestSinkSave(t *testing.T) {
	dir := t.TempDir()
	addr, stop := startSink(t, "--save", dir)
	msg := "From: a@x.test\nTo: b@y.test\nSubject: saved\n\nline one\n.dot line\n..two dots\nlast line without newline"
	want := strings.ReplaceAll(msg, "\n", "\r\n") + "\r\n"
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runWithInput(t, "", "send", "--server", addr, "--from", "a@x.test",
		"--to", "b@y.test,c@y.test", "--to", "d@z.test", "--helo", "sender.test", file)
	if code != 0 {
		t.Fatalf("send: code %d, stderr %q", code, errOut)
	}
	m := regexp.MustCompile(`^250 2\.0\.0 .*queued as (\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("send printed %q, want the 250 queued-as reply", out)
	}
	id := m[1]

	eml, err := os.ReadFile(filepath.Join(dir, id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	header, ok := strings.CutSuffix(string(eml), want)
	if !ok {
		t.Fatalf("saved message:\n%q\ndoes not end with what send sent:\n%q", eml, want)
	}
	if !strings.HasPrefix(header, "Received: ") || !strings.HasSuffix(header, "\r\n") {
		t.Errorf("added header %q, want a Received field", header)
	}
	for _, l := range strings.Split(strings.TrimSuffix(header, "\r\n"), "\r\n")[1:] {
		if !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			t.Errorf("added header line %q is not a continuation of Received", l)
		}
	}

	var env savedEnvelope
	data, err := os.ReadFile(filepath.Join(dir, id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatalf("%s.json: %v", id, err)
	}
	if env.ID != id || env.From != "a@x.test" || strings.Join(env.To, " ") != "b@y.test c@y.test d@z.test" ||
		env.ClientIP != "127.0.0.1" || env.ClientHELO != "sender.test" || env.Size != int64(len(want)) {
		t.Errorf("%s.json = %+v", id, env)
	}
	if got, want := sinkTotals(t, stop()), "messages=1 bytes="+strconv.Itoa(len(want)); got != want {
		t.Errorf("sink totals %q, want %q", got, want)
	}
	// Nothing but the message's two files is left in the folder.
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("save folder has %d entries, want 2", len(entries))
	}
}

func TestSinkReplies(t *testing.T) {
	for _, tc := range []struct {
		flag, reply string
	}{
		{"--mail-reply", "451 4.3.0 Try again later"},
		{"--rcpt-reply", "450 4.2.0 Mailbox busy"},
		{"--rcpt-reply", "550 5.1.1 No such user"},
		{"--data-reply", "554 5.7.1 Message refused"},
	} {
		t.Run(tc.flag+" "+tc.reply, func(t *testing.T) {
			addr, stop := startSink(t, tc.flag, tc.reply)
			code, out, errOut := runWithInput(t, "hello\n", "send", "--server", addr, "--from", "a@x.test", "--to", "b@y.test")
			if code != 1 || !strings.Contains(errOut, tc.reply) {
				t.Errorf("send: code %d, stderr %q; want 1 and %q", code, errOut, tc.reply)
			}
			if out != "" {
				t.Errorf("send stdout %q, want nothing", out)
			}
			if got := sinkTotals(t, stop()); got != "messages=0 bytes=0" {
				t.Errorf("sink totals %q, want none", got)
			}
		})
	}
}

func TestParseSinkReply(t *testing.T) {
	for _, tc := range []struct {
		in    string
		stage sdk.Stage
		want  *sdk.Decision // nil with ok: no decision
		ok    bool
	}{
		{"", sdk.StageRcpt, nil, true},
		{"450 4.2.0 Mailbox busy", sdk.StageRcpt, ptr(sdk.DeferDecision(450, sdk.EnhancedCode{4, 2, 0}, "Mailbox busy")), true},
		{"550 No such user", sdk.StageRcpt, ptr(sdk.RejectDecision(550, sdk.EnhancedCode{}, "No such user")), true},
		{"554 5.7.1", sdk.StageData, ptr(sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "")), true},
		{"250 ok", sdk.StageMail, nil, false},
		{"45 x", sdk.StageMail, nil, false},
		{"abc x", sdk.StageMail, nil, false},
		{"450 5.2.0 class mismatch", sdk.StageRcpt, nil, false},
		{"450 4.x.0 bad code", sdk.StageRcpt, nil, false},
		{"550 5.7.1 " + strings.Repeat("x", sdk.MaxMessageLen+1), sdk.StageRcpt, nil, false},
		{"550 5.7.1 bell\x07", sdk.StageRcpt, nil, false},
	} {
		got, err := parseSinkReply("rcpt-reply", tc.in, tc.stage)
		if (err == nil) != tc.ok {
			t.Errorf("parseSinkReply(%q) error = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if got != nil {
			got.Reason = ""
		}
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("parseSinkReply(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestSinkDropMidData: the sink cuts the connection once content starts,
// with no reply, and counts nothing.
func TestSinkDropMidData(t *testing.T) {
	addr, stop := startSink(t, "--drop-mid-data")
	code, out, errOut := runWithInput(t, "hello\n", "send", "--server", addr, "--from", "a@x.test", "--to", "b@y.test")
	if code != 1 || out != "" || errOut == "" {
		t.Errorf("send: code %d, stdout %q, stderr %q; want 1, nothing, an error", code, out, errOut)
	}
	if got := sinkTotals(t, stop()); got != "messages=0 bytes=0" {
		t.Errorf("sink totals %q, want none", got)
	}
}

// TestSinkSTARTTLS: with --tls-cert and --tls-key the sink offers
// STARTTLS and takes mail under it; one without the other is refused.
func TestSinkSTARTTLS(t *testing.T) {
	cert, key := smtptest.WriteCertificate(t, t.TempDir())
	addr, stop := startSink(t, "--tls-cert", cert, "--tls-key", key)
	code, out, errOut := runWithInput(t, "", "bench", "--server", addr, "--mode", "smtp-source", "--starttls",
		"--messages", "3", "--concurrency", "1", "--size", "1000")
	if code != 0 {
		t.Fatalf("bench --starttls: code %d, stderr %q, stdout %q", code, errOut, out)
	}
	if got, want := sinkTotals(t, stop()), "messages=3 bytes=3000"; got != want {
		t.Errorf("sink totals %q, want %q", got, want)
	}

	for _, args := range [][]string{{"--tls-cert", cert}, {"--tls-key", key}} {
		code, _, errOut := runWithInput(t, "", append([]string{"sink", "--listen", "127.0.0.1:0"}, args...)...)
		if want := "--tls-cert and --tls-key: give both or neither"; code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("sink %q: code %d, stderr %q; want 1 and %q", args, code, errOut, want)
		}
	}
}

// TestSinkReportLast: --report's lines say when the latest message came
// (last=, Unix seconds), which a benchmark times its end to end runs by:
// the time it notices the count is later by however long it took to look.
func TestSinkReportLast(t *testing.T) {
	addr, stop := startSink(t, "--report", "5ms")
	file := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(file, []byte("Subject: x\n\nx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if code, _, errOut := runWithInput(t, "", "send", "--server", addr, "--from", "a@x.test", "--to", "b@y.test", file); code != 0 {
		t.Fatalf("send: code %d, stderr %q", code, errOut)
	}
	after := time.Now()
	time.Sleep(50 * time.Millisecond) // a few reports
	out := stop()
	m := regexp.MustCompile(`(?m)^messages=1 bytes=\d+ rate=[\d.]+/s last=(\d+)\.(\d{9})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no report of the message with its time in:\n%s", out)
	}
	sec, _ := strconv.ParseInt(m[1], 10, 64)
	ns, _ := strconv.ParseInt(m[2], 10, 64)
	if last := time.Unix(sec, ns); last.Before(before) || last.After(after) {
		t.Errorf("last=%v, want between %v and %v", last, before, after)
	}
}
