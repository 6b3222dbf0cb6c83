package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/admin/admintest"
	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// queueT0 is when the test queue's first message arrived.
var queueT0 = time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)

// adminFixture is an admin API served in-process on 127.0.0.1:0 over a
// real spool holding two messages, a and b, with a stand-in engine.
type adminFixture struct {
	addr   string
	spool  *queue.Spool
	engine *admintest.Engine
	a, b   string
}

func startAdmin(t *testing.T) *adminFixture {
	t.Helper()
	ctx := context.Background()
	now := queueT0
	spool, err := queue.Open(t.TempDir(), queue.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	f := &adminFixture{spool: spool, engine: &admintest.Engine{Spool: spool}}

	f.a = queueMessage(t, spool, &envelope.Envelope{
		Sender: envelope.Address{Local: "alice", Domain: "example.org"},
		Recipients: []envelope.Recipient{
			{Address: envelope.Address{Local: "bob", Domain: "example.net"}, Notify: envelope.NotifyFailure | envelope.NotifyDelay, ORCPT: "rfc822;bob@example.net"},
			{Address: envelope.Address{Local: "carol", Domain: "example.com"}},
		},
		Size:       100,
		Body:       envelope.Body8BitMIME,
		Ret:        envelope.RetHdrs,
		EnvID:      "QQ314159",
		ClientIP:   "192.0.2.7",
		ClientHELO: "mx.example.org",
		AuthUser:   "alice",
		TLS:        true,
		Received:   queueT0.Add(-time.Second),
	}, 1200)
	err = spool.Update(ctx, f.a, func(m *queue.Message) error {
		m.Attempts = 2
		m.NextAttempt = queueT0.Add(10 * time.Minute)
		m.Recipients[0] = queue.RecipientState{
			Status:    queue.Deferred,
			LastReply: "451 4.7.1 Greylisted, try again later\x1b[2J",
			TLSPolicy: "mta-sts",
			Attempts:  2,
			Updated:   queueT0.Add(5 * time.Minute),
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	now = queueT0.Add(time.Minute)
	f.b = queueMessage(t, spool, &envelope.Envelope{
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "dave", Domain: "example.net"}}},
		ClientIP:   "127.0.0.1",
		ClientHELO: "localhost",
	}, 64)
	if err := spool.Update(ctx, f.b, func(m *queue.Message) error { m.Held = true; return nil }); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	a := admin.New(admin.Options{Queue: spool, Engine: f.engine})
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- a.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		spool.Close()
	})
	return f
}

func queueMessage(t *testing.T, s *queue.Spool, env *envelope.Envelope, size int) string {
	t.Helper()
	ctx := context.Background()
	d, err := s.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	header := []byte("Received: test\r\n")
	if _, err := d.Write([]byte(strings.Repeat("x", size-len(header)))); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, env, header); err != nil {
		t.Fatal(err)
	}
	return d.ID()
}

// ids replaces {A} and {B} with the fixture's IDs.
func (f *adminFixture) ids(s string) string {
	return strings.NewReplacer("{A}", f.a, "{B}", f.b).Replace(s)
}

// queueCLI runs `gateway queue -admin ADDR args...`.
func (f *adminFixture) queueCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	full := append([]string{"queue", "-admin", f.addr}, args...)
	for i := range full {
		full[i] = f.ids(full[i])
	}
	return runCLI(t, full...)
}

const lsOutput = `-Queue ID-------- --Size-- ---Arrival (UTC)--- -Sender/Recipient-------
{A}      1200 2026-03-03 12:00:00 alice@example.org
                                               deferred  bob@example.net
                                                         (451 4.7.1 Greylisted, try again later?[2J)
                                               pending   carol@example.com
{B}!       64 2026-03-03 12:01:00 <>
                                               pending   dave@example.net
-- 2 messages
`

func TestQueueLs(t *testing.T) {
	f := startAdmin(t)
	code, out, errOut := f.queueCLI(t, "ls")
	if code != 0 {
		t.Fatalf("queue ls: code %d, stderr %q", code, errOut)
	}
	if diff := cmp.Diff(f.ids(lsOutput), out); diff != "" {
		t.Errorf("queue ls (-want +got):\n%s", diff)
	}

	t.Run("limit", func(t *testing.T) {
		code, out, _ := f.queueCLI(t, "ls", "-limit", "1")
		want := f.ids(`-Queue ID-------- --Size-- ---Arrival (UTC)--- -Sender/Recipient-------
{A}      1200 2026-03-03 12:00:00 alice@example.org
                                               deferred  bob@example.net
                                                         (451 4.7.1 Greylisted, try again later?[2J)
                                               pending   carol@example.com
-- 1 message (the first 1; -limit shows more)
`)
		if diff := cmp.Diff(want, out); code != 0 || diff != "" {
			t.Errorf("queue ls -limit 1: code %d (-want +got):\n%s", code, diff)
		}
	})
	t.Run("domain", func(t *testing.T) {
		code, out, _ := f.queueCLI(t, "ls", "-domain", "example.com")
		if code != 0 || !strings.HasSuffix(out, "-- 1 message\n") || strings.Contains(out, f.b) {
			t.Errorf("queue ls -domain example.com: code %d, out:\n%s", code, out)
		}
	})
	t.Run("empty", func(t *testing.T) {
		code, out, _ := f.queueCLI(t, "ls", "-domain", "example.invalid")
		if code != 0 || out != "Mail queue is empty\n" {
			t.Errorf("queue ls on no match: code %d, out %q", code, out)
		}
	})
}

// TestQueueJSON: -json prints the API's answer as it came, before or after
// the command.
func TestQueueJSON(t *testing.T) {
	f := startAdmin(t)
	resp, err := http.Get("http://" + f.addr + "/v1/queue?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()

	for _, args := range [][]string{{"-json", "ls"}, {"ls", "-json"}, {"ls", "--json"}} {
		code, out, errOut := f.queueCLI(t, args...)
		if code != 0 || out != string(raw) {
			t.Errorf("queue %q: code %d, stderr %q, out:\n%s\nwant:\n%s", args, code, errOut, out, raw)
		}
	}
	code, out, _ := f.queueCLI(t, "show", "{A}", "-json")
	if code != 0 || !strings.HasPrefix(out, "{\n  \"id\": \""+f.a+"\",") || !strings.Contains(out, `"envelope": {`) {
		t.Errorf("queue show ID -json: code %d, out:\n%s", code, out)
	}
	code, out, _ = f.queueCLI(t, "-json", "retry", "-all")
	if want := "{\n  \"count\": 1\n}\n"; code != 0 || out != want {
		t.Errorf("queue -json retry -all: code %d, out %q, want %q", code, out, want)
	}
}

const showOutput = `ID:          {A}
State:       next attempt 2026-03-03 12:10:00 UTC
Arrival:     2026-03-03 12:00:00 UTC
Size:        1200 bytes
Attempts:    2
Sender:      alice@example.org
Client:      mx.example.org [192.0.2.7], TLS, authenticated as alice
Received:    2026-03-03 11:59:59 UTC
MAIL:        RET=HDRS ENVID=QQ314159 BODY=8BITMIME SIZE=100
Recipients:
  deferred  bob@example.net
            2 attempts, updated 2026-03-03 12:05:00 UTC, NOTIFY=FAILURE,DELAY, ORCPT=rfc822;bob@example.net, tls mta-sts
            (451 4.7.1 Greylisted, try again later?[2J)
  pending   carol@example.com
`

const showHeldOutput = `ID:          {B}
State:       held
Arrival:     2026-03-03 12:01:00 UTC
Size:        64 bytes
Attempts:    0
Sender:      <>
Client:      localhost [127.0.0.1]
Recipients:
  pending   dave@example.net
`

func TestQueueShow(t *testing.T) {
	f := startAdmin(t)
	for _, tt := range []struct{ id, want string }{{"{A}", showOutput}, {"{B}", showHeldOutput}} {
		code, out, errOut := f.queueCLI(t, "show", tt.id)
		if code != 0 {
			t.Fatalf("queue show %s: code %d, stderr %q", tt.id, code, errOut)
		}
		if diff := cmp.Diff(f.ids(tt.want), out); diff != "" {
			t.Errorf("queue show %s (-want +got):\n%s", tt.id, diff)
		}
	}
}

func TestQueueOperations(t *testing.T) {
	tests := []struct {
		args      []string
		wantOut   string
		wantCalls []string
	}{
		{[]string{"retry", "{A}"}, "{A}: due now\n", []string{"retry {A}"}},
		{[]string{"retry", "-all"}, "1 message due now\n", []string{"retry-all"}},
		{[]string{"retry", "--domain", "example.net"}, "1 message due now\n", []string{"retry-domain example.net"}},
		{[]string{"retry", "-domain", "example.invalid"}, "0 messages due now\n", []string{"retry-domain example.invalid"}},
		{[]string{"hold", "{A}"}, "{A}: held\n", []string{"hold {A}"}},
		{[]string{"release", "{B}"}, "{B}: released\n", []string{"release {B}"}},
		{[]string{"bounce", "{A}"}, "{A}: bounced\n", []string{"bounce {A}"}},
		{[]string{"rm", "{B}"}, "{B}: removed\n", []string{"remove {B}"}},
		{[]string{"-json", "hold", "{A}"}, "{\n  \"id\": \"{A}\",\n  \"action\": \"hold\"\n}\n", []string{"hold {A}"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			f := startAdmin(t)
			code, out, errOut := f.queueCLI(t, tt.args...)
			if code != 0 || out != f.ids(tt.wantOut) {
				t.Errorf("code %d, out %q, stderr %q; want 0, %q", code, out, errOut, f.ids(tt.wantOut))
			}
			var want []string
			for _, c := range tt.wantCalls {
				want = append(want, f.ids(c))
			}
			if diff := cmp.Diff(want, f.engine.Calls()); diff != "" {
				t.Errorf("engine calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQueueLsAfterHold: what the engine did shows in the next listing.
func TestQueueLsAfterHold(t *testing.T) {
	f := startAdmin(t)
	if code, _, errOut := f.queueCLI(t, "hold", "{A}"); code != 0 {
		t.Fatalf("hold: code %d, stderr %q", code, errOut)
	}
	_, out, _ := f.queueCLI(t, "ls")
	if !strings.Contains(out, "\n"+f.a+"!     1200 ") {
		t.Errorf("ls after hold does not mark %s held:\n%s", f.a, out)
	}
}

func TestQueueErrors(t *testing.T) {
	f := startAdmin(t)
	f.engine.Busy = map[string]bool{f.b: true}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // all of stderr for code 1, its first line for code 2
	}{
		{"unknown ID", []string{"show", "0000000000000000"}, 1, "gateway queue: message 0000000000000000 not found\n"},
		{"unknown ID op", []string{"hold", "0000000000000000"}, 1, "gateway queue: message 0000000000000000 not found\n"},
		{"busy", []string{"bounce", "{B}"}, 1, "gateway queue: message {B} is being delivered; try again when the attempt is over\n"},
		{"no command", nil, 2, "usage: gateway queue [-config gateway.hcl | -admin host:port] [-json] <command>"},
		{"unknown command", []string{"flush"}, 2, `gateway queue: unknown command "flush"`},
		{"show without ID", []string{"show"}, 2, "usage: gateway queue show ID"},
		{"hold two IDs", []string{"hold", "{A}", "{B}"}, 2, "usage: gateway queue hold ID"},
		{"retry nothing", []string{"retry"}, 2, "usage: gateway queue retry ID | -all | -domain D"},
		{"retry ID and all", []string{"retry", "{A}", "-all"}, 2, "usage: gateway queue retry ID | -all | -domain D"},
		{"ls bad limit", []string{"ls", "-limit", "0"}, 2, "usage: gateway queue ls [-json] [-limit N>0] [-domain D] [-cluster]"},
		{"ls unknown flag", []string{"ls", "-x"}, 2, "flag provided but not defined: -x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := f.queueCLI(t, tt.args...)
			want := f.ids(tt.wantErr)
			got := errOut
			if tt.wantCode == 2 {
				got, _, _ = strings.Cut(errOut, "\n")
			}
			if code != tt.wantCode || got != want || out != "" {
				t.Errorf("code %d, stdout %q, stderr %q; want %d, no stdout, %q", code, out, errOut, tt.wantCode, want)
			}
		})
	}
	if diff := cmp.Diff([]string{"hold 0000000000000000", "bounce " + f.b}, f.engine.Calls()); diff != "" {
		t.Errorf("engine calls (-want +got):\n%s", diff)
	}
}

func TestQueueAddressFromConfig(t *testing.T) {
	f := startAdmin(t)
	dir := t.TempDir()
	write := func(name, admin string) string {
		path := filepath.Join(dir, name)
		cfg := "hostname = \"mx.test\"\ndata_dir = \"" + dir + "\"\nlistener \"mx\" { address = \"127.0.0.1:0\" }\n" + admin
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	withAdmin := write("with.hcl", "admin { address = \""+f.addr+"\" }\n")
	code, out, errOut := runCLI(t, "queue", "-config", withAdmin, "ls")
	if code != 0 || out != f.ids(lsOutput) {
		t.Errorf("queue -config with admin ls: code %d, stderr %q, out:\n%s", code, errOut, out)
	}

	without := write("without.hcl", "")
	code, _, errOut = runCLI(t, "queue", "-config", without, "ls")
	want := "gateway queue: " + without + " has no admin block, so the admin API is off; add admin { address = \"127.0.0.1:8025\" } or give -admin\n"
	if code != 1 || errOut != want {
		t.Errorf("queue -config without admin: code %d, stderr %q; want 1, %q", code, errOut, want)
	}

	code, _, errOut = runCLI(t, "queue", "-config", filepath.Join(dir, "missing.hcl"), "ls")
	if code != 1 || !strings.HasPrefix(errOut, "gateway queue: config: ") {
		t.Errorf("queue -config missing: code %d, stderr %q", code, errOut)
	}
}

// TestQueueFlagsAfterCommand: the queue command's flags (-admin, -config,
// -json, -timeout) work after its subcommand too, as the README writes
// `gateway queue ls -admin H:P`.
func TestQueueFlagsAfterCommand(t *testing.T) {
	f := startAdmin(t)
	config := filepath.Join(t.TempDir(), "gateway.hcl")
	src := "listener \"mx\" { address = \"127.0.0.1:0\" }\nadmin { address = \"" + f.addr + "\" }\n"
	if err := os.WriteFile(config, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"ls", "-admin", f.addr}, lsOutput},
		{[]string{"ls", "-limit", "5", "--admin=" + f.addr, "-timeout", "10s"}, lsOutput},
		{[]string{"ls", "-config", config}, lsOutput},
		{[]string{"show", "{A}", "-admin", f.addr}, showOutput},
		{[]string{"retry", "-all", "-admin", f.addr, "-json"}, "{\n  \"count\": 1\n}\n"},
		{[]string{"-admin", "127.0.0.1:1", "hold", "{A}", "-admin", f.addr}, "{A}: held\n"},
	}
	for _, tt := range tests {
		args := append([]string{"queue"}, tt.args...)
		for i := range args {
			args[i] = f.ids(args[i])
		}
		code, out, errOut := runCLI(t, args...)
		if code != 0 || out != f.ids(tt.want) {
			t.Errorf("%q: code %d, stderr %q, out:\n%s\nwant:\n%s", args, code, errOut, out, f.ids(tt.want))
		}
	}
}

func TestQueueUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, out, errOut := runCLI(t, "queue", "-admin", addr, "ls")
	want := "gateway queue: cannot reach the admin API at " + addr + ": dial tcp " + addr + ": connect: connection refused\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("code %d, stdout %q, stderr %q; want 1, %q", code, out, errOut, want)
	}
}

func TestAdminURL(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:8025", "http://127.0.0.1:8025"},
		{"localhost:8025", "http://localhost:8025"},
		{"[::1]:8025", "http://[::1]:8025"},
		{":8025", "http://127.0.0.1:8025"},
		{"0.0.0.0:8025", "http://127.0.0.1:8025"},
		{"[::]:8025", "http://[::1]:8025"},
	} {
		got, err := adminURL(tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("adminURL(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	if _, err := adminURL("8025"); err == nil {
		t.Error(`adminURL("8025") succeeded; want an error`)
	}
}

// TestQueueDomainHolds: hold -domain, holds, ls and release -domain, with
// their exact outputs.
func TestQueueDomainHolds(t *testing.T) {
	f := startAdmin(t)
	f.engine.Holds = []delivery.DomainHold{{Domain: "example.com", Source: delivery.HoldByConfig}}
	f.engine.Now = func() time.Time { return queueT0.Add(time.Hour) }
	steps := []struct {
		args        []string
		code        int
		out, errOut string
	}{
		{[]string{"hold", "-domain", "Example.NET"}, 0, "example.net: held\n", ""},
		{[]string{"holds"}, 0, "example.com                    hold_domains\n" +
			"example.net                    operator since 2026-03-03 13:00:00 UTC\n", ""},
		{[]string{"ls", "-domain", "example.net"}, 0, `-Queue ID-------- --Size-- ---Arrival (UTC)--- -Sender/Recipient-------
{A}      1200 2026-03-03 12:00:00 alice@example.org
                                               held      bob@example.net
                                                         (operator hold example.net)
                                                         (451 4.7.1 Greylisted, try again later?[2J)
                                               held      carol@example.com
                                                         (hold_domains example.com)
{B}!       64 2026-03-03 12:01:00 <>
                                               held      dave@example.net
                                                         (operator hold example.net)
-- 2 messages
`, ""},
		{[]string{"show", "{B}"}, 0, `ID:          {B}
State:       held
Arrival:     2026-03-03 12:01:00 UTC
Size:        64 bytes
Attempts:    0
Sender:      <>
Client:      localhost [127.0.0.1]
Recipients:
  held      dave@example.net
            operator hold example.net
`, ""},
		{[]string{"release", "-domain", "example.net"}, 0, "example.net: released, 0 messages due now\n", ""},
		{[]string{"release", "-domain", "example.net"}, 1, "", "gateway queue: delivery: domain is not held: example.net\n"},
		{[]string{"hold", "-domain", "example.net", "{A}"}, 2, "", "usage: gateway queue hold ID | -domain D\n"},
		{[]string{"holds", "x"}, 2, "", "usage: gateway queue holds [-json]\n"},
	}
	for _, s := range steps {
		code, out, errOut := f.queueCLI(t, s.args...)
		if code != s.code || out != f.ids(s.out) || errOut != s.errOut {
			t.Errorf("queue %q: code %d, stdout:\n%s\nstderr: %q\nwant %d, stdout:\n%s\nstderr: %q",
				s.args, code, out, errOut, s.code, f.ids(s.out), s.errOut)
		}
	}
	want := []string{"hold-domain example.net", "release-domain example.net", "release-domain example.net"}
	if diff := cmp.Diff(want, f.engine.Calls()); diff != "" {
		t.Errorf("engine calls (-want +got):\n%s", diff)
	}
	if _, out, _ := startAdmin(t).queueCLI(t, "holds"); out != "No domain is held\n" {
		t.Errorf("queue holds with none: %q", out)
	}
}
