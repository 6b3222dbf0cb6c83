package gateway_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

var (
	policyScript = gateway.PolicyScript
	brokenScript = gateway.BrokenScript
)

// hookConfig is a gateway.hcl with one lua hook (policy.lua beside it),
// an admin API, and local mail delivered to a Maildir, so nothing leaves
// the machine.
const hookConfig = `
hostname = "mx.test"
shutdown_timeout = "5s"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
relay { networks = ["127.0.0.0/8"] }
admin { address = "127.0.0.1:0" }
delivery {
  route "example.test" {
    transport = "maildir"
    path      = "mail"
  }
}
pipeline = ["lua.policy"]
lua "policy" {
  path     = "policy.lua"
  timeout  = "5s"
  on_error = "defer"
  match { stage = ["rcpt"] }
}
`

// hookGateway is a gateway running hookConfig.
type hookGateway struct {
	*gatewaytest.Gateway
	script string // policy.lua
	mx     string // the SMTP listener's address
	admin  string // the admin API's address
}

func startHookGateway(t *testing.T, script string) *hookGateway {
	t.Helper()
	path := gatewaytest.WriteConfig(t, hookConfig)
	script = writeScript(t, filepath.Dir(path), script)
	g := gatewaytest.StartFile(t, path)
	return &hookGateway{Gateway: g, script: script, mx: g.Addr(t, "mx"), admin: g.Addr(t, "admin")}
}

// writeScript replaces dir/policy.lua atomically, so that a reload racing
// the write never reads half a file, and returns its path.
func writeScript(t *testing.T, dir, src string) string {
	t.Helper()
	path := filepath.Join(dir, "policy.lua")
	if err := os.WriteFile(path+".tmp", []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

// rcptReplies sends one message to ok@example.test and
// blocked@example.test and returns the replies to both RCPTs and to the
// message, or an error if the session failed.
func rcptReplies(ctx context.Context, addr string) (ok, blocked, data smtp.Reply, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		return ok, blocked, data, err
	}
	defer c.Close()
	env := &envelope.Envelope{
		Sender: envelope.Address{Local: "a", Domain: "client.test"},
		Recipients: []envelope.Recipient{
			{Address: envelope.Address{Local: "ok", Domain: "example.test"}},
			{Address: envelope.Address{Local: "blocked", Domain: "example.test"}},
		},
	}
	res, err := c.Send(ctx, env, strings.NewReader("Subject: hook test\r\n\r\nHello.\r\n"))
	if err != nil {
		return ok, blocked, data, err
	}
	if len(res.Rcpts) != 2 {
		return ok, blocked, data, fmt.Errorf("got %d RCPT replies, want 2", len(res.Rcpts))
	}
	if err := c.Quit(ctx); err != nil {
		return ok, blocked, data, fmt.Errorf("quit: %w", err)
	}
	return res.Rcpts[0], res.Rcpts[1], res.Data, nil
}

// checkVersion sends a message and checks that the script of the given
// version answered it: 250 for ok@, its 550 for blocked@, the message
// queued.
func checkVersion(t *testing.T, addr string, version int) {
	t.Helper()
	ok, blocked, data, err := rcptReplies(context.Background(), addr)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	if want := fmt.Sprintf("550 5.1.1 Blocked by version %d", version); blocked.String() != want {
		t.Errorf("RCPT TO:<blocked@example.test>: got %q, want %q", blocked.String(), want)
	}
	if ok.Code != 250 || data.Code != 250 {
		t.Errorf("RCPT TO:<ok@example.test>: %q, message: %q; want 250 for both", ok.String(), data.String())
	}
}

// postReload asks the admin API to reload and returns the status and body.
func postReload(t *testing.T, adminAddr string) (int, string) {
	t.Helper()
	resp, err := http.Post("http://"+adminAddr+"/v1/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHookRejectsRcpt runs the gateway with a Lua hook and checks the
// exact reply the client reads on the wire.
func TestHookRejectsRcpt(t *testing.T) {
	g := startHookGateway(t, policyScript(1))
	smtptest.Run(t, g.mx, `
S: 220 *
C: HELO client.test
S: 250 *
C: MAIL FROM:<a@client.test>
S: 250 *
C: RCPT TO:<blocked@example.test>
S: 550 5.1.1 Blocked by version 1
C: RCPT TO:<ok@example.test>
S: 250 *
C: QUIT
S: 221 *
`)
	if !strings.Contains(g.Log().String(), `msg="hooks loaded" part=hook pipeline=lua.policy`) {
		t.Errorf("no hooks loaded line in the log:\n%s", g.Log())
	}
}

// TestHookReloadAdmin changes the script and reloads through the admin
// API; a script that does not compile, and a config with an error, are
// refused with file:line and leave the running hooks in place.
func TestHookReloadAdmin(t *testing.T) {
	g := startHookGateway(t, policyScript(1))
	dir := filepath.Dir(g.Path)
	checkVersion(t, g.mx, 1)

	writeScript(t, dir, policyScript(2))
	if code, body := postReload(t, g.admin); code != 200 || body != "{\n  \"status\": \"reloaded\"\n}\n" {
		t.Fatalf("reload: %d %q, want 200 reloaded", code, body)
	}
	checkVersion(t, g.mx, 2)

	t.Run("script error", func(t *testing.T) {
		writeScript(t, dir, brokenScript)
		code, body := postReload(t, g.admin)
		if want := g.script + ":3:"; code != 500 || !strings.Contains(body, want) {
			t.Errorf("reload of a broken script: %d %q; want 500 naming %s", code, body, want)
		}
		if !g.Log().Wait(5*time.Second, "reload failed; the running hooks stay") {
			t.Errorf("the failed reload is not logged:\n%s", g.Log())
		}
		checkVersion(t, g.mx, 2)
	})

	t.Run("config error", func(t *testing.T) {
		writeScript(t, dir, policyScript(3))
		src := editConfig(t, g.Path, `on_error = "defer"`, `on_error = "ignore"`)
		defer os.WriteFile(g.Path, src, 0o600)
		bad, _ := os.ReadFile(g.Path)
		line := 1 + strings.Count(string(bad[:strings.Index(string(bad), `"ignore"`)]), "\n")
		code, body := postReload(t, g.admin)
		if want := fmt.Sprintf("%s:%d:", g.Path, line); code != 500 || !strings.Contains(body, want) {
			t.Errorf("reload of a bad config: %d %q; want 500 naming %s", code, body, want)
		}
		checkVersion(t, g.mx, 2)
	})

	t.Run("other sections need a restart", func(t *testing.T) {
		editConfig(t, g.Path, `domains = ["example.test"]`, `domains = ["example.test", "example.org"]`)
		if code, body := postReload(t, g.admin); code != 200 {
			t.Fatalf("reload: %d %q, want 200", code, body)
		}
		checkVersion(t, g.mx, 3)
		warned := regexp.MustCompile(`msg="reload applies only .* changed=domains\n`)
		if !warned.MatchString(g.Log().String()) {
			t.Errorf("no warning naming the changed domains setting:\n%s", g.Log())
		}
	})
}

// editConfig replaces old by new in the file at path and returns what the
// file held before.
func editConfig(t *testing.T, path, old, new string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(src), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestHookReloadUnderLoad reloads five times while four clients send
// continuously: every session completes and every message gets the reply
// of one version of the script or the other.
func TestHookReloadUnderLoad(t *testing.T) {
	g := startHookGateway(t, policyScript(0))
	var (
		stop     atomic.Bool
		sessions atomic.Int64
		mu       sync.Mutex
		failures []string
		seen     = map[string]int{}
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				ok, blocked, data, err := rcptReplies(context.Background(), g.mx)
				sessions.Add(1)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case ok.Code != 250 || data.Code != 250 || blocked.Code != 550 ||
					!strings.HasPrefix(blocked.String(), "550 5.1.1 Blocked by version "):
					failures = append(failures, fmt.Sprintf("replies %q, %q, %q", ok.String(), blocked.String(), data.String()))
				default:
					seen[blocked.String()]++
				}
				mu.Unlock()
			}
		})
	}
	for v := 1; v <= 5; v++ {
		time.Sleep(200 * time.Millisecond)
		writeScript(t, filepath.Dir(g.Path), policyScript(v))
		if code, body := postReload(t, g.admin); code != 200 {
			t.Errorf("reload %d: %d %q", v, code, body)
		}
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d of %d sessions failed; first: %s", len(failures), sessions.Load(), failures[0])
	}
	if sessions.Load() < 20 {
		t.Errorf("only %d sessions ran", sessions.Load())
	}
	if len(seen) < 2 {
		t.Errorf("the sessions saw %d version(s) of the script, want several: %v", len(seen), seen)
	}
	t.Logf("%d sessions, replies: %v", sessions.Load(), seen)
	checkVersion(t, g.mx, 5)
}

// TestPartFailureStops: a part that fails while the gateway runs (here the
// admin API's listener, closed under it) stops the whole gateway with an
// error naming the part, rather than leaving it to serve without it.
func TestPartFailureStops(t *testing.T) {
	cfg, err := config.Parse([]byte(`
hostname = "mx.test"
data_dir = "`+t.TempDir()+`"
listener "mx" { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
`), "gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(context.Background(), cfg, gateway.Options{Resolver: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before any part failed", err)
	case <-time.After(100 * time.Millisecond):
	}
	g.CloseAdminListenerForTest() // its Serve fails: the listener is gone under it
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "admin") {
			t.Errorf("Run returned %v; want an error naming the admin part", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not stop after its admin API failed")
	}
}

// TestDuplicateRecipientsOneMaildirFile is issue 8's bug 2 through a whole
// gateway: the same mailbox named three ways (twice as given, once in
// other case) and once more through an alias reaches its Maildir once.
func TestDuplicateRecipientsOneMaildirFile(t *testing.T) {
	here, err := filepath.Abs("../../scripts/aliases.lua")
	if err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, `
hostname = "mx.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
delivery {
  route "example.test" {
    transport = "maildir"
    path      = "mail"
  }
}
lua "aliases" {
  path   = "`+here+`"
  params = {
    aliases       = { "info@example.test" = ["alice@example.test"] }
    local_domains = ["example.test"]
  }
}
`)
	smtptest.Run(t, g.Addr(t, "mx"), `
S: 220 *
C: HELO client.test
S: 250 *
C: MAIL FROM:<a@client.test>
S: 250 *
C: RCPT TO:<alice@example.test>
S: 250 *
C: RCPT TO:<alice@example.test>
S: 250 *
C: RCPT TO:<Alice@Example.TEST>
S: 250 *
C: RCPT TO:<info@example.test>
S: 250 *
C: DATA
S: 354 *
C: Subject: once
C:
C: Hello.
C: .
S: 250 *
C: QUIT
S: 221 *
`)
	dir := filepath.Join(filepath.Dir(g.Path), "mail", "example.test", "alice", "new")
	var files []string
	gatewaytest.Eventually(10*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*"))
		return len(files) > 0 && len(g.Queued(t)) == 0
	})
	time.Sleep(100 * time.Millisecond) // a second copy would be written by now
	if files, _ = filepath.Glob(filepath.Join(dir, "*")); len(files) != 1 {
		t.Errorf("alice's Maildir has %d messages, want 1: %v", len(files), files)
	}
	// The log counts attempts from 1 and names the listener once.
	if !strings.Contains(g.Log().String(), "attempt=1 done=true") {
		t.Errorf("the delivery's log line does not say attempt=1")
	}
	for _, line := range strings.Split(g.Log().String(), "\n") {
		if strings.Count(line, "listener=") > 1 {
			t.Errorf("a log line names its listener twice: %s", line)
		}
	}
}

// TestRefusalsMetric: a refusal at RCPT (relay denied) is counted in the
// admin API's metrics by command and code (issue 10, item 8).
func TestRefusalsMetric(t *testing.T) {
	g := gatewaytest.Start(t, `
hostname = "mx.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
relay { networks = [] }
admin { address = "127.0.0.1:0" }
`)
	smtptest.Run(t, g.Addr(t, "mx"), `
S: 220 *
C: HELO client.test
S: 250 *
C: MAIL FROM:<a@client.test>
S: 250 *
C: RCPT TO:<someone@elsewhere.test>
S: 550 5.7.1 *
C: QUIT
S: 221 *
`)
	resp, err := http.Get("http://" + g.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `gateway_smtp_refusals_total{code="550",command="rcpt",enhanced="5.7.1"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestTLSHandshakesMetric: the admin API's metrics count the listeners'
// TLS handshakes by result and version, and carry the SMTP transport's
// outbound series from the start.
func TestTLSHandshakesMetric(t *testing.T) {
	dir := t.TempDir()
	smtptest.WriteCertificate(t, dir)
	g := startTLSGateway(t, dir, `admin { address = "127.0.0.1:0" }`)
	ctx := context.Background()
	c, err := smtp.Dial(ctx, g.Addr(t, "mx"), smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(ctx, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	c.Quit(ctx)
	resp, err := http.Get("http://" + g.Addr(t, "admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`gateway_smtp_tls_handshakes_total{result="full",version="TLSv1.3"} 1`,
		`gateway_smtp_tls_handshakes_total{result="resumed",version="TLSv1.3"} 0`,
		`gateway_delivery_tls_handshakes_total{result="full",version="TLSv1.3"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
