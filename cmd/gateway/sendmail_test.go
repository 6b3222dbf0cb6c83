package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/pickup"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestSendmailOptions: the command line as local programs write it.
func TestSendmailOptions(t *testing.T) {
	tests := []struct {
		args []string
		want sendmailOptions
	}{
		{[]string{"a@example.test"}, sendmailOptions{dotEnds: true, recipients: []string{"a@example.test"}}},
		{[]string{"-t", "-i"}, sendmailOptions{extract: true}},
		{[]string{"-ti"}, sendmailOptions{extract: true}},
		{[]string{"-oi", "-t"}, sendmailOptions{extract: true}},
		{[]string{"-f", "bounce@example.test", "-F", "Cron Daemon", "b@example.test"},
			sendmailOptions{dotEnds: true, sender: "bounce@example.test", senderSet: true, fullName: "Cron Daemon", recipients: []string{"b@example.test"}}},
		{[]string{"-fbounce@example.test", "-r", "<>", "x@example.test"},
			sendmailOptions{dotEnds: true, sender: "<>", senderSet: true, recipients: []string{"x@example.test"}}},
		{[]string{"-C", "/etc/gw.hcl", "-bs"}, sendmailOptions{mode: modeSMTP, dotEnds: true, config: "/etc/gw.hcl"}},
		{[]string{"-bp"}, sendmailOptions{mode: modeMailq, dotEnds: true}},
		{[]string{"-q"}, sendmailOptions{mode: modeFlush, dotEnds: true}},
		{[]string{"-qRexample.test"}, sendmailOptions{mode: modeFlush, dotEnds: true, flushSite: "example.test"}},
		{[]string{"-qIABC"}, sendmailOptions{mode: modeFlush, dotEnds: true, flushID: "ABC"}},
		{[]string{"-q30m"}, sendmailOptions{mode: modeIgnore, dotEnds: true}},
		{[]string{"-bi"}, sendmailOptions{mode: modeIgnore, dotEnds: true}},
		{[]string{"-I"}, sendmailOptions{mode: modeIgnore, dotEnds: true}},
		{[]string{"-N", "success,failure", "-R", "hdrs", "-V", "id+1 x", "-B", "8BITMIME", "a@example.test"},
			sendmailOptions{dotEnds: true, notify: envelope.NotifySuccess | envelope.NotifyFailure, ret: envelope.RetHdrs,
				envID: "id+2B1+20x", body: envelope.Body8BitMIME, recipients: []string{"a@example.test"}}},
		{[]string{"-Nnever", "a@example.test"}, sendmailOptions{dotEnds: true, notify: envelope.NotifyNever, recipients: []string{"a@example.test"}}},
		// Ignored, as Postfix ignores them.
		{[]string{"-oem", "-odb", "-oee", "-om", "-v", "-U", "-G", "-m", "-c", "-x", "-Am", "-L", "x", "-h", "9", "-O", "a=b",
			"-e", "x", "-p", "x", "-o7", "-R", "1000", "-t"}, sendmailOptions{extract: true, dotEnds: true}},
		{[]string{"-i", "--", "-odd@example.test"}, sendmailOptions{recipients: []string{"-odd@example.test"}}},
		{[]string{"a@example.test", "-f", "x"}, sendmailOptions{dotEnds: true, recipients: []string{"a@example.test", "-f", "x"}}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := parseSendmail(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&tt.want, got, cmp.AllowUnexported(sendmailOptions{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestSendmailUsage: a bad command line exits 64 (EX_USAGE) with a
// message, before anything is read.
func TestSendmailUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-Z"}, "unknown option -Z"},
		{[]string{"-f"}, "option -f needs a value"},
		{[]string{"-bp", "a@example.test"}, "display queue mode requires no recipient"},
		{[]string{"-q", "a@example.test"}, "flush queue mode requires no recipient"},
		{[]string{"-bs", "a@example.test"}, "stand-alone mode requires no recipient"},
		{[]string{"-bp", "-t"}, "-t can be used only in delivery mode"},
		{[]string{"-bs", "-qRexample.test"}, "-qR and -qI can be used only in delivery mode"},
		{[]string{"-B", "9BIT"}, "-B needs 8BITMIME or 7BIT"},
		{[]string{"-N", "sometimes"}, "-N needs never"},
		{[]string{"-XV"}, "unsupported: -XV"},
		{[]string{"-bv"}, "unsupported: -bv"},
		{[]string{"-bd"}, "gateway serve"},
		{[]string{"-qS"}, "-qS is not supported"},
		{[]string{"-qI", "ABC"}, "-qI is not supported"},
		{[]string{"-n"}, "-n is not supported"},
		{[]string{"-V", "a\x01b"}, "-V needs an envelope ID"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runCLI(t, append([]string{"sendmail"}, tt.args...)...)
			if code != exUsage || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("code %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, exUsage, tt.want)
			}
		})
	}
}

// sendmailConfig writes a gateway.hcl whose data_dir is in a temporary
// folder, with local mail into a Maildir beside it and extra at the top
// level; it returns its path and the pickup directory.
func sendmailConfig(t *testing.T, extra string) (path, pickupDir string) {
	t.Helper()
	dataDir := filepath.Join(t.TempDir(), "data")
	path = writeConfig(t, dataDir, `delivery {
  route "example.test" {
    transport = "maildir"
    path      = "mail"
  }
}
`+extra)
	return path, gateway.PickupDir(dataDir)
}

// runSendmail runs `gateway sendmail args...` in-process with stdin.
func runSendmailCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	c := &cli{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}
	code = run(context.Background(), c, append([]string{"sendmail"}, args...))
	return code, out.String(), errb.String()
}

// onlyPickup opens the one message in the pickup directory dir.
func onlyPickup(t *testing.T, dir string) (*pickup.Envelope, string) {
	t.Helper()
	names, err := pickup.List(dir)
	if err != nil || len(names) != 1 {
		t.Fatalf("pickup holds %v (%v), want one message", names, err)
	}
	m, err := pickup.Open(dir, names[0], 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var b bytes.Buffer
	b.ReadFrom(m.Body())
	return m.Env, b.String()
}

func rcptList(env *pickup.Envelope) []string {
	var out []string
	for _, r := range env.Recipients {
		out = append(out, r.Address.String())
	}
	return out
}

// TestSendmailEnqueue: what a message from a local program becomes in the
// pickup directory.
func TestSendmailEnqueue(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantFrom   string
		wantRcpts  []string
		wantIn     []string // in the stored message
		wantNotIn  []string
		wantNotify envelope.Notify
		wantBody   envelope.Body
	}{
		{
			name: "-t -i", args: []string{"-t", "-i", "-f", "cron@mx.test", "-F", "Cron Daemon"},
			stdin:    "To: a@example.test, Bob <b@example.test>\nCc: root\nBcc: hidden@example.test\nSubject: x\n\nhi\n.\nafter the dot\n",
			wantFrom: "cron@mx.test", wantRcpts: []string{"a@example.test", "b@example.test", "root@mx.test", "hidden@example.test"},
			wantIn:    []string{"From: \"Cron Daemon\" <cron@mx.test>\r\n", "Date: ", "Message-ID: <", "To: a@example.test, Bob <b@example.test>\r\n", "\r\n\r\nhi\r\n.\r\nafter the dot\r\n"},
			wantNotIn: []string{"Bcc", "hidden"},
		},
		{
			name: "dot ends", args: []string{"a@example.test", "b@example.test,c@example.test"},
			stdin:     "From: Me <me@example.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\nSubject: y\r\n\r\nbody\r\n.\r\nlost\r\n",
			wantRcpts: []string{"a@example.test", "b@example.test", "c@example.test"},
			wantIn:    []string{"From: Me <me@example.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\nSubject: y\r\n\r\nbody\r\n"},
			wantNotIn: []string{"lost", "From: \"", "\r\n.\r\n"},
		},
		{
			name: "-t adds to the arguments, once each, and Resent- fields win", args: []string{"-t", "-oi", "-N", "success", "a@example.test"},
			stdin:     "From alice  Mon Jan  1 00:00:00 2024\n>From x\nTo: z@example.test\nResent-To: a@example.test\nResent-Cc: r@example.test\nResent-Bcc: s@example.test\n\nhi\n",
			wantRcpts: []string{"a@example.test", "r@example.test", "s@example.test"},
			wantIn:    []string{"To: z@example.test\r\nResent-To: a@example.test\r\n"},
			wantNotIn: []string{"From alice", ">From", "Resent-Bcc", "s@example.test"}, wantNotify: envelope.NotifySuccess,
		},
		{
			name: "8-bit content", args: []string{"a@example.test"}, stdin: "Subject: caf\xc3\xa9\n\ncaf\xc3\xa9\n",
			wantRcpts: []string{"a@example.test"}, wantBody: envelope.Body8BitMIME,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, dir := sendmailConfig(t, "")
			code, out, errOut := runSendmailCLI(t, tt.stdin, append([]string{"-C", path}, tt.args...)...)
			if code != 0 || out != "" || errOut != "" {
				t.Fatalf("code %d, stdout %q, stderr %q", code, out, errOut)
			}
			env, msg := onlyPickup(t, dir)
			if tt.wantFrom != "" && env.Sender.String() != tt.wantFrom {
				t.Errorf("sender %s, want %s", env.Sender, tt.wantFrom)
			}
			if diff := cmp.Diff(tt.wantRcpts, rcptList(env)); diff != "" {
				t.Errorf("recipients (-want +got):\n%s", diff)
			}
			if env.Recipients[0].Notify != tt.wantNotify || env.Body != tt.wantBody || env.UID != os.Getuid() {
				t.Errorf("notify %v body %q uid %d; want %v %q %d", env.Recipients[0].Notify, env.Body, env.UID, tt.wantNotify, tt.wantBody, os.Getuid())
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(msg, s) {
					t.Errorf("message lacks %q:\n%s", s, msg)
				}
			}
			for _, s := range tt.wantNotIn {
				if strings.Contains(msg, s) {
					t.Errorf("message has %q:\n%s", s, msg)
				}
			}
		})
	}
}

// TestSendmailExits: the sysexits codes of what goes wrong after the
// command line.
func TestSendmailExits(t *testing.T) {
	path, dir := sendmailConfig(t, "")
	tests := []struct {
		args  []string
		stdin string
		code  int
		want  string
	}{
		{[]string{"-C", path}, "Subject: x\n\nhi\n", exUsage, "recipient addresses must be specified"},
		{[]string{"-C", path, "-t"}, "Subject: x\n\nhi\n", exUsage, "no recipient addresses found in message header"},
		{[]string{"-C", path, "-t"}, "To: <a@\n\nhi\n", exDataErr, "unable to extract recipients: To"},
		{[]string{"-C", path, "a b c@"}, "hi\n", exUsage, `recipient "a b c@"`},
		{[]string{"-C", path, "-f", "a@b, c@d", "a@example.test"}, "hi\n", exUsage, "is not one address"},
		{[]string{"-C", filepath.Join(t.TempDir(), "none.hcl"), "a@example.test"}, "hi\n", exConfig, "none.hcl"},
		{[]string{"-C", path, "-bp"}, "", exConfig, "has no admin block"},
		{[]string{"-C", path, "-q"}, "", exConfig, "has no admin block"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[2:], " "), func(t *testing.T) {
			code, _, errOut := runSendmailCLI(t, tt.stdin, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("code %d, stderr %q; want %d and %q", code, errOut, tt.code, tt.want)
			}
		})
	}
	if names, _ := pickup.List(dir); len(names) != 0 {
		t.Errorf("pickup holds %v after failures", names)
	}
}

// TestSendmailDefaultConfig: without -C, sendmail reads gateway.hcl in
// the working directory.
func TestSendmailDefaultConfig(t *testing.T) {
	path, dir := sendmailConfig(t, "")
	t.Chdir(filepath.Dir(path))
	if code, _, errOut := runSendmailCLI(t, "hi\n", "a@example.test"); code != 0 {
		t.Fatalf("code %d, stderr %q", code, errOut)
	}
	if env, _ := onlyPickup(t, dir); rcptList(env)[0] != "a@example.test" {
		t.Errorf("recipients %v", rcptList(env))
	}
}

// TestSendmailLimit: a message over max_message_size is refused with
// EX_DATAERR and nothing is kept. The size is the server's: of the message
// as submitted, with CRLF line ends and the fields sendmail adds.
func TestSendmailLimit(t *testing.T) {
	const limit = 1024
	head := "From: a@example.test\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@y>\n\n"
	crlf := func(s string) int { return len(s) + strings.Count(s, "\n") }
	tests := []struct {
		name  string
		stdin string
		ok    bool
	}{
		{"too big", "Subject: x\n\n" + strings.Repeat("x", 2000) + "\n", false},
		{"exactly the limit with CRLF", head + strings.Repeat("x", limit-crlf(head)-2) + "\n", true},
		{"over the limit with CRLF only", head + strings.Repeat("x\n", (limit-crlf(head))/3+1), false},
		{"over the limit with the added fields", "\n" + strings.Repeat("x", limit-10) + "\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			path := writeConfig(t, dataDir, "")
			cfg := strings.Replace(readFile(t, path), `address = "127.0.0.1:0"`, "address = \"127.0.0.1:0\"\n  max_message_size = \"1KB\"", 1)
			os.WriteFile(path, []byte(cfg), 0o600)
			code, _, errOut := runSendmailCLI(t, tt.stdin, "-C", path, "a@example.test")
			names, _ := pickup.List(gateway.PickupDir(dataDir))
			switch {
			case tt.ok && (code != 0 || len(names) != 1):
				t.Errorf("code %d, stderr %q, pickup %v; want it kept", code, errOut, names)
			case !tt.ok && (code != exDataErr || !strings.Contains(errOut, "larger than max_message_size") || len(names) != 0):
				t.Errorf("code %d, stderr %q, pickup %v; want %d", code, errOut, names, exDataErr)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runChild runs the gateway binary (the test binary as main) with args,
// stdin, and the program name argv0 (a symlink's name, or "" for the
// binary's own).
func runChild(t *testing.T, argv0, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin := os.Args[0]
	if argv0 != "" {
		bin = filepath.Join(t.TempDir(), argv0)
		if err := os.Symlink(os.Args[0], bin); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// TestSendmailServerDown is the check, with real processes: the
// message of `printf … | gateway sendmail -t -i` is kept in pickup while
// the server is down (exit 0), delivered with Return-Path when it starts,
// and a message sent while it runs is delivered too.
func TestSendmailServerDown(t *testing.T) {
	path, dir := sendmailConfig(t, "")
	code, out, errOut := runChild(t, "", "To: a@example.test\nSubject: x\n\nhi\n", "sendmail", "-C", path, "-t", "-i")
	if code != 0 || out != "" || errOut != "" {
		t.Fatalf("sendmail with the server down: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	if names, _ := pickup.List(dir); len(names) != 1 {
		t.Fatalf("pickup holds %v, want the message", names)
	}
	gw := startGateway(t, "serve", "-config", path)
	mail := filepath.Join(filepath.Dir(path), "mail", "example.test")
	delivered := func(box string) []string {
		files, _ := filepath.Glob(filepath.Join(mail, box, "new", "*"))
		return files
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(delivered("a")) == 1 }) {
		t.Fatalf("not delivered after the start; log:\n%s", gw.stderr.String())
	}
	b := readFile(t, delivered("a")[0])
	login, _ := loginName()
	for _, want := range []string{"Return-Path: <" + login + "@mx.test>\n", "Received: from pickup ([127.0.0.1])", "Subject: x\n", "\nhi\n"} {
		if !strings.Contains(b, want) {
			t.Errorf("delivered message lacks %q:\n%s", want, b)
		}
	}
	// The file goes once the submission has returned, which can be after
	// the engine delivered the message.
	if !gatewaytest.Eventually(5*time.Second, func() bool { names, _ := pickup.List(dir); return len(names) == 0 }) {
		names, _ := pickup.List(dir)
		t.Errorf("pickup still holds %v", names)
	}
	// The server running: the next one goes through within a pass.
	code, _, errOut = runChild(t, "sendmail", "To: b@example.test\nSubject: y\n\nhi\n", "-C", path, "-t", "-i")
	if code != 0 || errOut != "" {
		t.Fatalf("sendmail (symlink): code %d, stderr %q", code, errOut)
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(delivered("b")) == 1 }) {
		t.Fatalf("not delivered while running; log:\n%s", gw.stderr.String())
	}
}

// TestMailqSymlink: mailq, a symlink to the binary, lists the queue as
// `gateway queue ls` does, through the admin API.
func TestMailqSymlink(t *testing.T) {
	f := startAdmin(t)
	path, _ := sendmailConfig(t, "admin { address = \""+f.addr+"\" }\n")
	code, out, errOut := runChild(t, "mailq", "", "-C", path)
	if code != 0 || out != f.ids(lsOutput) {
		t.Errorf("mailq: code %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, f.ids(lsOutput))
	}
	code, out, _ = runSendmailCLI(t, "", "-C", path, "-bp")
	if code != 0 || out != f.ids(lsOutput) {
		t.Errorf("sendmail -bp: code %d, stdout:\n%s", code, out)
	}
}

// TestMailqPickup: mail waiting in pickup is listed before the queue; with
// the server down mailq says so and exits 69 (EX_UNAVAILABLE).
func TestMailqPickup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	path, _ := sendmailConfig(t, "admin { address = \""+down+"\" }\n")
	if code, _, errOut := runSendmailCLI(t, "Subject: x\n\nhi\n", "-C", path, "-f", "<>", "a@example.test"); code != 0 {
		t.Fatalf("sendmail: %d %s", code, errOut)
	}
	code, out, errOut := runSendmailCLI(t, "", "-C", path, "-bp")
	if code != exUnavailable || !strings.Contains(errOut, "is the gateway running?") {
		t.Errorf("code %d, stderr %q; want %d", code, errOut, exUnavailable)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 5 || lines[0] != lsHeader || !strings.HasSuffix(lines[1], " <>") ||
		strings.TrimSpace(lines[2]) != "pickup    a@example.test" || lines[3] != "-- 1 message" {
		t.Errorf("listing:\n%s", out)
	}
}

// TestSendmailFlush: -q, -qR and -qI ask the admin API for a retry.
func TestSendmailFlush(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-q"}, "retry-all"},
		{[]string{"-qRexample.net"}, "retry-domain example.net"},
		{[]string{"-qI{A}"}, "retry {A}"},
	} {
		f := startAdmin(t)
		path, _ := sendmailConfig(t, "admin { address = \""+f.addr+"\" }\n")
		args := append([]string{"-C", path}, f.ids(tt.args[0]))
		code, out, errOut := runSendmailCLI(t, "", args...)
		if code != 0 || out != "" || errOut != "" {
			t.Errorf("%v: code %d, stdout %q, stderr %q", tt.args, code, out, errOut)
		}
		if diff := cmp.Diff([]string{f.ids(tt.want)}, f.engine.Calls()); diff != "" {
			t.Errorf("%v: engine calls (-want +got):\n%s", tt.args, diff)
		}
	}
}

// bsScript is a -bs session: a message, a refused command, a second
// message in the same session.
const bsScript = `
S: 220 mx.test ESMTP ready
C: EHLO client.test
S: 250-mx.test Hello client.test
S~ 250-.*
S~ 250-.*
S~ 250-.*
S~ 250-.*
S~ 250-.*
S~ 250-.*
S~ 250-.*
S: 250 DSN
C: MAIL FROM:<cron@mx.test>
S: 250 2.1.0 Ok
C: RCPT TO:<a@example.test> NOTIFY=SUCCESS,FAILURE
S: 250 2.1.5 Ok
C: RCPT TO:<b@elsewhere.test>
S: 250 2.1.5 Ok
C: DATA
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: first
C:
C: ..dot stuffed
C: .
S: 250 2.0.0 Ok: queued as *
C: MAIL FROM:<bad
S: 501 5.5.4 Bad address syntax
C: MAIL FROM:<> RET=HDRS ENVID=e1
S: 250 2.1.0 Ok
C: RCPT TO:<c@example.test>
S: 250 2.1.5 Ok
C: DATA
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: second
C:
C: hi
C: .
S: 250 2.0.0 Ok: queued as *
C: QUIT
S: 221 2.0.0 Bye
`

// TestSendmailBS: sendmail -bs, a real process with its stdin and stdout
// on a TCP connection, passes a transcript, and each message is in the
// pickup directory with its envelope.
func TestSendmailBS(t *testing.T) {
	path, dir := sendmailConfig(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- serveBS(ln, path) }()
	smtptest.Run(t, ln.Addr().String(), bsScript)
	if err := <-done; err != nil {
		t.Fatalf("sendmail -bs: %v", err)
	}
	names, err := pickup.List(dir)
	if err != nil || len(names) != 2 {
		t.Fatalf("pickup holds %v (%v), want two messages", names, err)
	}
	var got []string
	for _, name := range names {
		m, err := pickup.Open(dir, name, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(m.Body())
		m.Close()
		got = append(got, strings.Join([]string{m.Env.Sender.Path(), strings.Join(rcptList(m.Env), ","),
			m.Env.Recipients[0].Notify.String(), string(m.Env.Ret), m.Env.EnvID}, " ")+"\n"+b.String())
	}
	want := []string{
		"<cron@mx.test> a@example.test,b@elsewhere.test SUCCESS,FAILURE  \nSubject: first\r\n\r\n.dot stuffed\r\n",
		"<> c@example.test  HDRS e1\nSubject: second\r\n\r\nhi\r\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pickup messages (-want +got):\n%s", diff)
	}
}

// serveBS accepts one connection on ln and runs `gateway sendmail -bs`
// with the connection as its stdin and stdout, until it exits.
func serveBS(ln net.Listener, config string) error {
	conn, err := ln.Accept()
	if err != nil {
		return err
	}
	f, err := conn.(*net.TCPConn).File()
	conn.Close() // f is a copy; the child gets its own
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[0], "sendmail", "-C", config, "-bs")
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	cmd.Stdin, cmd.Stdout = f, f
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err = cmd.Start()
	f.Close() // the child holds the socket now: its exit closes it
	if err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil || errb.Len() > 0 {
		return fmt.Errorf("%v: %s", err, errb.String())
	}
	return nil
}

// TestSendmailForeignDataDir: sendmail does not make the pickup directory
// in another user's data_dir (the server would refuse it): it exits 73.
func TestSendmailForeignDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	path, dir := sendmailConfig(t, "")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Dir(dir), 1234, 1234); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runSendmailCLI(t, "hi\n", "-C", path, "a@example.test")
	if code != exCantCreat || !strings.Contains(errOut, "start the gateway once") {
		t.Errorf("code %d, stderr %q; want %d", code, errOut, exCantCreat)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pickup made: %v", err)
	}
}

// TestSendmailLocalUser: a local user (uid 65534) who can read the
// configuration but none of the files it names (a TLS key, a route's
// password file and an inject token, all 0600) sends through a data_dir
// the server made: sendmail exits 0 and the message is in pickup, owned
// by the user.
func TestSendmailLocalUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run as another user")
	}
	base := t.TempDir()
	searchableUp(t, base)
	dataDir := filepath.Join(base, "data")
	serverCfg, err := config.Load(writeConfig(t, dataDir, ""))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), serverCfg, gateway.Options{Resolver: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()

	for _, name := range []string{"cert.pem", "key.pem", "smarthost.pass", "inject.token"} {
		writeFile(t, filepath.Join(base, name), "secret of the server\n")
		os.Chmod(filepath.Join(base, name), 0o600)
	}
	path := filepath.Join(base, "gateway.hcl")
	writeFile(t, path, fmt.Sprintf(`hostname = "mx.test"
data_dir = %q
listener "mx" {
  address = "127.0.0.1:0"
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}
delivery {
  route "*" {
    via = "smtp.provider.example:587"
    auth {
      username      = "gw"
      password_file = "smarthost.pass"
    }
  }
}
inject {
  address    = "127.0.0.1:0"
  token_file = "inject.token"
}
`, dataDir))
	os.Chmod(path, 0o644)
	bin := filepath.Join(base, "gateway")
	writeFile(t, bin, readFile(t, os.Args[0]))
	os.Chmod(bin, 0o755)

	cmd := exec.Command(bin, "sendmail", "-C", path, "-t", "-i")
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Stdin = strings.NewReader("To: a@example.test\nSubject: x\n\nhi\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sendmail as uid 65534: %v: %s", err, out)
	}
	env, _ := onlyPickup(t, gateway.PickupDir(dataDir))
	if env.UID != 65534 || rcptList(env)[0] != "a@example.test" {
		t.Errorf("pickup message of uid %d to %v", env.UID, rcptList(env))
	}
	for dir, want := range map[string]os.FileMode{dataDir: 0o711, filepath.Join(dataDir, "queue"): 0o700} {
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %o", dir, st.Mode(), err, want)
		}
	}
}

// searchableUp lets every user search dir and its parents (temporary
// folders are 0700), until the test ends.
func searchableUp(t *testing.T, dir string) {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		// Only the folders that lack it, every other bit kept.
		if mode := st.Mode() & (os.ModePerm | os.ModeSticky | os.ModeSetgid); mode&0o001 == 0 {
			if err := os.Chmod(d, mode|0o011); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(d, mode) })
		}
		if d == filepath.Dir(d) {
			return
		}
	}
}

// TestSendmailBSBinary: sendmail -bs offers CHUNKING and BINARYMIME, and
// takes a BINARYMIME message (NUL, bare CR and LF) with BDAT; the running
// server picks it up and delivers it intact.
func TestSendmailBSBinary(t *testing.T) {
	path, dir := sendmailConfig(t, "")
	gw := startGateway(t, "serve", "-config", path)
	content := "Subject: bin\r\n\r\n\x00\x01bare\rCR and bare\nLF\r\nno newline at the end"
	escaped := strings.Trim(strconv.Quote(content), `"`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- serveBS(ln, path) }()
	smtptest.Run(t, ln.Addr().String(), fmt.Sprintf(`
S: 220 mx.test ESMTP ready
C: EHLO client.test
S: 250-mx.test Hello client.test
S: 250-PIPELINING
S: 250-SIZE 26214400
S: 250-8BITMIME
S: 250-SMTPUTF8
S: 250-ENHANCEDSTATUSCODES
S: 250-CHUNKING
S: 250-BINARYMIME
S: 250 DSN
C: MAIL FROM:<cron@example.test> BODY=BINARYMIME
S: 250 2.1.0 Ok
C: RCPT TO:<a@example.test>
S: 250 2.1.5 Ok
B: BDAT %d LAST\r\n%s
S: 250 2.0.0 Ok: queued as *
C: QUIT
S: 221 2.0.0 Bye
`, len(content), escaped))
	if err := <-done; err != nil {
		t.Fatalf("sendmail -bs: %v", err)
	}
	mail := filepath.Join(filepath.Dir(path), "mail", "example.test", "a", "new")
	var files []string
	if !gatewaytest.Eventually(10*time.Second, func() bool { files, _ = filepath.Glob(filepath.Join(mail, "*")); return len(files) == 1 }) {
		names, _ := pickup.List(dir)
		t.Fatalf("not delivered (pickup holds %v); log:\n%s", names, gw.stderr.String())
	}
	// A Maildir has LF line ends; every other byte is the sender's.
	if got := readFile(t, files[0]); !strings.HasSuffix(got, "\n"+strings.ReplaceAll(content, "\r\n", "\n")) {
		t.Errorf("delivered message does not end with the content:\n%q", got)
	}
}

// TestParseAddressList: recipients as -t finds them in To: and Cc:, a
// bare login name among them (which net/mail refuses) being a mailbox of
// this host, without splitting a quoted display name at its comma.
func TestParseAddressList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a@example.test, Bob <b@example.test>", []string{"a@example.test", "b@example.test"}},
		{"root", []string{"root@mx.test"}},
		{`root, "Doe, John" <j@x.test>`, []string{"root@mx.test", "j@x.test"}},
		{`root, j@x.test (Doe, John), "a \"b, c\"" <k@x.test>`, []string{"root@mx.test", "j@x.test", "k@x.test"}},
		{"root,, admin", []string{"root@mx.test", "admin@mx.test"}},
	}
	for _, tt := range tests {
		as, err := parseAddressList(tt.in, "mx.test")
		if err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		var got []string
		for _, a := range as {
			got = append(got, a.String())
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.in, diff)
		}
	}
}
