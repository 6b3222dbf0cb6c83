package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/pluginhost/pluginhosttest"
	"github.com/mailgate/gateway/core/smtp"
)

// envRunMain makes the test binary act as the gateway binary, so tests can
// start real child processes without a separate build step.
const envRunMain = "GATEWAY_TEST_RUN_MAIN"

// TestMain runs the tests, failing the run if a plugin process outlives
// them; with envRunMain it is the gateway.
func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		main()
	}
	os.Exit(pluginhosttest.Main(m))
}

// child is a `gateway` process started from the test binary.
type child struct {
	cmd    *exec.Cmd
	addr   string // serve: first listener's address; sink: its address
	stderr *lockedBuffer

	adminCh chan string // serve: the admin API's address, once it listens
}

// adminAddr waits for the admin API's "admin listening" log line.
func (c *child) adminAddr(t *testing.T) string {
	t.Helper()
	select {
	case a := <-c.adminCh:
		c.adminCh <- a
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("admin API did not start; output:\n%s", c.stderr.String())
	}
	return ""
}

var (
	listeningRE      = regexp.MustCompile(`msg=listening .*address=(\S+)`)
	adminListeningRE = regexp.MustCompile(`msg="admin listening" address=(\S+)`)
	sinkListeningLn  = regexp.MustCompile(`^listening on (\S+)$`)
)

// startGateway runs `gateway args...` as a child process and, for serve
// and sink, waits until it listens.
func startGateway(t *testing.T, args ...string) *child {
	t.Helper()
	return startGatewayUnder(t, nil, args...)
}

// startGatewayUnder is startGateway with the gateway run by the command
// wrap (strace), which must pass its environment on.
func startGatewayUnder(t *testing.T, wrap []string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	if len(wrap) > 0 {
		cmd = exec.Command(wrap[0], append(append(wrap[1:len(wrap):len(wrap)], os.Args[0]), args...)...)
	}
	cmd.Env = append(os.Environ(), envRunMain+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &lockedBuffer{}, adminCh: make(chan string, 1)}
	addr := make(chan string, 1)
	scan := func(r io.Reader, re *regexp.Regexp) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			c.stderr.WriteLine(line)
			if m := re.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
			if m := adminListeningRE.FindStringSubmatch(line); m != nil {
				select {
				case c.adminCh <- m[1]:
				default:
				}
			}
		}
	}
	go scan(stderr, listeningRE)
	go scan(stdout, sinkListeningLn)
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if len(args) > 0 && (args[0] == "serve" || args[0] == "sink") {
		select {
		case c.addr = <-addr:
		case <-time.After(20 * time.Second):
			t.Fatalf("gateway %s did not start listening; output:\n%s", args[0], c.stderr.String())
		}
	}
	return c
}

// writeConfig writes a gateway.hcl for tests into a temporary folder and
// returns its path. extra is appended at the top level.
func writeConfig(t *testing.T, dataDir, extra string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`hostname = "mx.test"
data_dir = %q
shutdown_timeout = "5s"
log { level = "info" }
listener "mx" {
  address = "127.0.0.1:0"
}
domains = ["example.test"]
relay { networks = ["127.0.0.0/8"] }
%s
`, dataDir, extra)
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedBuffer collects a child's log lines while the test reads them.
type lockedBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *lockedBuffer) WriteLine(s string) { b.mu.Lock(); b.lines = append(b.lines, s); b.mu.Unlock() }

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = run(context.Background(), &cli{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || out != "gateway dev\n" {
		t.Fatalf("version: code %d, out %q; want 0, %q", code, out, "gateway dev\n")
	}
}

// TestREADMEListsEveryCommand: the README's table of the command line has
// a row for every command `gateway -h` lists (it had none for spool and
// dkim).
func TestREADMEListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		row := "\n| `gateway " + c.name // then a space or the backtick: send is not sendmail
		if !strings.Contains(string(readme), row+" ") && !strings.Contains(string(readme), row+"`") {
			t.Errorf("README.md's command table has no row for %q", c.name)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := runCLI(t, "frobnicate")
	if code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("code %d, stderr %q; want 2 and the unknown command named", code, errOut)
	}
}

// TestParseVerbFlags: a command's flags and its verb's are taken on either
// side of the verb's arguments, and a verb's flag hides the command's.
func TestParseVerbFlags(t *testing.T) {
	tests := []struct {
		args      []string
		wantPos   []string
		wantAdmin string
		wantJSON  bool
		wantLimit int
		wantErr   error
	}{
		{args: nil, wantAdmin: "cmd", wantLimit: 10},
		{args: []string{"a", "b"}, wantPos: []string{"a", "b"}, wantAdmin: "cmd", wantLimit: 10},
		{args: []string{"-admin", "h:1", "a"}, wantPos: []string{"a"}, wantAdmin: "h:1", wantLimit: 10},
		{args: []string{"a", "-admin", "h:1", "-json"}, wantPos: []string{"a"}, wantAdmin: "h:1", wantJSON: true, wantLimit: 10},
		{args: []string{"a", "--limit=3", "b", "-json"}, wantPos: []string{"a", "b"}, wantAdmin: "cmd", wantJSON: true, wantLimit: 3},
		{args: []string{"a", "--", "-json", "b"}, wantPos: []string{"a", "-json", "b"}, wantAdmin: "cmd", wantLimit: 10},
		{args: []string{"-nope"}, wantErr: errUsage},
		{args: []string{"a", "-h"}, wantErr: flag.ErrHelp},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stderr strings.Builder
			c := &cli{Stderr: &stderr}
			cmd := newFlags(c, "cmd", "")
			admin := cmd.String("admin", "", "the command's")
			asJSON := cmd.Bool("json", false, "the command's")
			cmd.Int("limit", 99, "the command's, hidden by the verb's")
			if err := cmd.Parse([]string{"-admin", "cmd", "verb"}); err != nil {
				t.Fatal(err)
			}
			verb := newFlags(c, "cmd verb", "")
			limit := verb.Int("limit", 10, "the verb's")
			pos, err := parseVerbFlags(verb, cmd, tt.args)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v; stderr %q", err, tt.wantErr, stderr.String())
			}
			if err != nil {
				return
			}
			if !slices.Equal(pos, tt.wantPos) || *admin != tt.wantAdmin || *asJSON != tt.wantJSON || *limit != tt.wantLimit {
				t.Errorf("got %q, -admin %q, -json %v, -limit %d; want %q, %q, %v, %d",
					pos, *admin, *asJSON, *limit, tt.wantPos, tt.wantAdmin, tt.wantJSON, tt.wantLimit)
			}
		})
	}
	// The verb's usage lists the command's flags with their defaults.
	var stderr strings.Builder
	c := &cli{Stderr: &stderr}
	cmd := newFlags(c, "cmd", "")
	cmd.String("admin", "", "admin API address")
	cmd.Parse([]string{"-admin", "given", "verb"})
	verb := newFlags(c, "cmd verb", "ARG")
	if _, err := parseVerbFlags(verb, cmd, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	if want := "usage: gateway cmd verb ARG\n  -admin string\n    \tadmin API address\n"; stderr.String() != want {
		t.Errorf("verb usage:\n%q\nwant:\n%q", stderr.String(), want)
	}
}

func TestCheck(t *testing.T) {
	data := t.TempDir()
	good := writeConfig(t, data, "")
	code, out, errOut := runCLI(t, "check", "-config", good)
	if want := good + ": ok (1 listeners, 1 local domains, data in " + data + ")\n"; code != 0 || out != want {
		t.Fatalf("check good config: code %d, out %q, err %q", code, out, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(bad, []byte("listener \"mx\" {\n  address = \"127.0.0.1:0\"\n  max_recipients = \"many\"\n}\n"), 0o600)
	code, _, errOut = runCLI(t, "check", "-config", bad)
	if code != 1 || !strings.Contains(errOut, bad+":3:") {
		t.Fatalf("check bad config: code %d, stderr %q; want 1 and a diagnostic at %s:3", code, errOut, bad)
	}
}

func TestCheckDefaultConfig(t *testing.T) {
	code, out, errOut := runCLI(t, "check", "-config", "../../gateway.hcl")
	if code != 0 || !strings.HasPrefix(out, "../../gateway.hcl: ok (") {
		t.Fatalf("check gateway.hcl: code %d, out %q, err %q", code, out, errOut)
	}
}

// sendUntilGone sends messages to addr from senders sessions at once until
// the server goes away (or ctx ends): message n of sender w is body(w, n),
// to rcpt. accepted is called, from the senders' goroutines, with the queue
// ID and body of every message that got a 250. The returned wait blocks
// until every sender has stopped.
func sendUntilGone(ctx context.Context, addr string, rcpt envelope.Address, senders int,
	body func(w, n int) string, accepted func(id, body string)) (wait func()) {
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "load.test", Timeout: 5 * time.Second})
			if err != nil {
				return
			}
			defer c.Close()
			if c.Hello(ctx) != nil {
				return
			}
			env := &envelope.Envelope{
				Sender:     envelope.Address{Local: "s", Domain: "load.test"},
				Recipients: []envelope.Recipient{{Address: rcpt}},
			}
			for n := 0; ; n++ {
				b := body(w, n)
				res, err := c.Send(ctx, env, strings.NewReader(b))
				if err != nil {
					return // the server died under us
				}
				if res.Data.Code == 250 {
					accepted(res.ID, b)
				}
			}
		}()
	}
	return wg.Wait
}

// TestStrayArguments: a command that takes no arguments refuses a stray
// word (gateway check /etc/gateway.hcl checked ./gateway.hcl and said ok),
// and send takes its file before or after its flags.
func TestStrayArguments(t *testing.T) {
	for _, args := range [][]string{
		{"check", "/nonexistent/gateway.hcl"},
		{"check", "extra", "-config", "/nonexistent/gateway.hcl"},
		{"serve", "gateway.hcl"},
		{"version", "now"},
		{"sink", "x"},
		{"bench", "x"},
	} {
		code, _, errOut := runCLI(t, args...)
		if first, _, _ := strings.Cut(errOut, "\n"); code != 2 || !strings.Contains(first, "unexpected argument") {
			t.Errorf("%q: code %d, stderr %q; want 2 and an unexpected argument", args, code, errOut)
		}
	}
	code, _, errOut := runCLI(t, "send", "/nonexistent/message.eml", "--from", "a@b.test", "--to", "c@d.test", "--server", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "/nonexistent/message.eml") {
		t.Errorf("send FILE --from …: code %d, stderr %q; want 1 naming the file it could not read", code, errOut)
	}
}
