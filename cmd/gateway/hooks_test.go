package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// policyScript rejects RCPT to blocked@example.test with a text that names
// its version, so a test can tell which script answered.
func policyScript(version int) string {
	return fmt.Sprintf(`-- test policy, version %d
function on_rcpt(ctx)
  if ctx.txn.rcpt == "blocked@example.test" then
    return gw.reject(550, "5.1.1", "Blocked by version %d")
  end
  return nil
end
`, version, version)
}

// brokenScript does not compile: its error is on line 3.
const brokenScript = `-- broken on purpose
function on_rcpt(ctx)
  local x = = 1
end
`

// hookGateway is a gateway.hcl with one lua hook (policy.lua in its own
// folder), an admin API, and local mail delivered to a Maildir, so nothing
// leaves the machine.
type hookGateway struct {
	config string // gateway.hcl
	script string // policy.lua
}

func newHookGateway(t *testing.T, script string) hookGateway {
	t.Helper()
	dir := t.TempDir()
	g := hookGateway{script: filepath.Join(dir, "policy.lua")}
	g.writeScript(t, script)
	g.config = writeConfig(t, filepath.Join(dir, "data"), fmt.Sprintf(`
admin { address = "127.0.0.1:0" }
delivery {
  route "example.test" {
    transport = "maildir"
    path      = %q
  }
}
pipeline = ["lua.policy"]
lua "policy" {
  path     = %q
  timeout  = "5s"
  on_error = "defer"
  match { stage = ["rcpt"] }
}
`, filepath.Join(dir, "mail"), g.script))
	return g
}

// writeScript replaces policy.lua atomically, so that a reload racing the
// write never reads half a file.
func (g hookGateway) writeScript(t *testing.T, src string) {
	t.Helper()
	tmp := g.script + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, g.script); err != nil {
		t.Fatal(err)
	}
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
	if testing.Short() {
		t.Skip("starts processes")
	}
	g := newHookGateway(t, policyScript(1))
	gw := startGateway(t, "serve", "-config", g.config)
	smtptest.Run(t, gw.addr, `
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
	if !strings.Contains(gw.stderr.String(), `msg="hooks loaded" pipeline=lua.policy`) {
		t.Errorf("no hooks loaded line in the log:\n%s", gw.stderr.String())
	}
}

// TestHookReloadAdmin changes the script and reloads through the admin
// API; a script that does not compile, and a config with an error, are
// refused with file:line and leave the running hooks in place.
func TestHookReloadAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	g := newHookGateway(t, policyScript(1))
	gw := startGateway(t, "serve", "-config", g.config)
	admin := gw.adminAddr(t)
	checkVersion(t, gw.addr, 1)

	g.writeScript(t, policyScript(2))
	if code, body := postReload(t, admin); code != 200 || body != "{\n  \"status\": \"reloaded\"\n}\n" {
		t.Fatalf("reload: %d %q, want 200 reloaded", code, body)
	}
	checkVersion(t, gw.addr, 2)

	t.Run("script error", func(t *testing.T) {
		g.writeScript(t, brokenScript)
		code, body := postReload(t, admin)
		if want := g.script + ":3:"; code != 500 || !strings.Contains(body, want) {
			t.Errorf("reload of a broken script: %d %q; want 500 naming %s", code, body, want)
		}
		if !eventually(5*time.Second, func() bool {
			return strings.Contains(gw.stderr.String(), "reload failed; the running hooks stay")
		}) {
			t.Errorf("the failed reload is not logged:\n%s", gw.stderr.String())
		}
		checkVersion(t, gw.addr, 2)
	})

	t.Run("config error", func(t *testing.T) {
		g.writeScript(t, policyScript(3))
		src, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(string(src), `on_error = "defer"`, `on_error = "ignore"`, 1)
		if err := os.WriteFile(g.config, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(g.config, src, 0o600)
		line := 1 + strings.Count(bad[:strings.Index(bad, `"ignore"`)], "\n")
		code, body := postReload(t, admin)
		if want := fmt.Sprintf("%s:%d:", g.config, line); code != 500 || !strings.Contains(body, want) {
			t.Errorf("reload of a bad config: %d %q; want 500 naming %s", code, body, want)
		}
		checkVersion(t, gw.addr, 2)
	})

	t.Run("other sections need a restart", func(t *testing.T) {
		src, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(src), `domains = ["example.test"]`, `domains = ["example.test", "example.org"]`, 1)
		if err := os.WriteFile(g.config, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, body := postReload(t, admin); code != 200 {
			t.Fatalf("reload: %d %q, want 200", code, body)
		}
		checkVersion(t, gw.addr, 3)
		warned := regexp.MustCompile(`msg="reload applies only .* changed=domains\n`)
		if !eventually(5*time.Second, func() bool { return warned.MatchString(gw.stderr.String() + "\n") }) {
			t.Errorf("no warning naming the changed domains setting:\n%s", gw.stderr.String())
		}
	})
}

// TestHookReloadSIGHUP reloads a gateway process with SIGHUP.
func TestHookReloadSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	g := newHookGateway(t, policyScript(1))
	gw := startGateway(t, "serve", "-config", g.config)
	checkVersion(t, gw.addr, 1)

	g.writeScript(t, policyScript(2))
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool {
		return strings.Contains(gw.stderr.String(), "reloaded the hook pipeline")
	}) {
		t.Fatalf("no reload after SIGHUP; output:\n%s", gw.stderr.String())
	}
	checkVersion(t, gw.addr, 2)

	g.writeScript(t, brokenScript)
	gw.cmd.Process.Signal(syscall.SIGHUP)
	if !eventually(10*time.Second, func() bool {
		return strings.Contains(gw.stderr.String(), "reload failed; the running hooks stay")
	}) {
		t.Fatalf("no failed reload after SIGHUP with a broken script; output:\n%s", gw.stderr.String())
	}
	if !strings.Contains(gw.stderr.String(), g.script+":3:") {
		t.Errorf("the failed reload's log does not name %s:3:\n%s", g.script, gw.stderr.String())
	}
	checkVersion(t, gw.addr, 2)

	// The process still stops cleanly.
	gw.cmd.Process.Signal(os.Interrupt)
	if err := gw.cmd.Wait(); err != nil {
		t.Errorf("gateway exit: %v; output:\n%s", err, gw.stderr.String())
	}
}

// TestHookReloadUnderLoad reloads five times while four clients send
// continuously: every session completes and every message gets the reply
// of one version of the script or the other.
func TestHookReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	g := newHookGateway(t, policyScript(0))
	gw := startGateway(t, "serve", "-config", g.config)
	admin := gw.adminAddr(t)

	var (
		stop     atomic.Bool
		sessions atomic.Int64
		mu       sync.Mutex
		failures []string
		seen     = map[string]int{}
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ok, blocked, data, err := rcptReplies(context.Background(), gw.addr)
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
		}()
	}
	for v := 1; v <= 5; v++ {
		time.Sleep(200 * time.Millisecond)
		g.writeScript(t, policyScript(v))
		if code, body := postReload(t, admin); code != 200 {
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
	checkVersion(t, gw.addr, 5)
}

// TestServeRefusesBrokenScript: serve does not start on a script that does
// not compile, and says where.
func TestServeRefusesBrokenScript(t *testing.T) {
	g := newHookGateway(t, brokenScript)
	code, _, errOut := runCLI(t, "serve", "-config", g.config)
	if want := g.script + ":3:"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("serve with a broken script: code %d, stderr %q; want 1 naming %s", code, errOut, want)
	}
}

func TestCheckScripts(t *testing.T) {
	g := newHookGateway(t, policyScript(1))
	code, out, errOut := runCLI(t, "check", "-config", g.config)
	if code != 0 || !strings.Contains(out, ": ok (1 listeners, 1 local domains, 1 hooks, data in ") {
		t.Fatalf("check: code %d, out %q, err %q", code, out, errOut)
	}

	g.writeScript(t, brokenScript)
	code, _, errOut = runCLI(t, "check", "-config", g.config)
	if want := g.script + ":3:"; code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("check with a broken script: code %d, stderr %q; want 1 naming %s", code, errOut, want)
	}
}

// TestBuildChain checks the wiring of config to chain: pipeline order,
// timeouts, on_error, match blocks and the scripts' own stages.
func TestBuildChain(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// first rejects every recipient of example.org (its match block picks
	// them); second rejects everything it sees at rcpt and data, and
	// fails at mail; its match restricts it to unauthenticated sessions
	// at mail and rcpt.
	write("first.lua", `function on_rcpt(ctx) return gw.reject(550, "5.7.1", "first: " .. gw.params.word) end`)
	write("second.lua", `
function on_mail(ctx) error("boom") end
function on_rcpt(ctx) return gw.reject(550, "5.7.1", "second") end
function on_data(ctx) return gw.reject(554, "5.7.1", "second data") end
`)
	write("gateway.hcl", `
listener "mx" { address = "127.0.0.1:0" }
pipeline = ["lua.first", "lua.second"]
lua "second" {
  path     = "second.lua"
  on_error = "reject"
  match {
    authenticated = false
    stage         = ["mail", "rcpt"]
  }
}
lua "first" {
  path    = "first.lua"
  timeout = "250ms"
  params  = { word = "example.org" }
  match { recipient_domain = ["example.org"] }
}
`)
	cfg, err := config.Load(filepath.Join(dir, "gateway.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	chain, closers, err := buildChain(context.Background(), cfg, hookDeps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(closers)
	if chain.Len() != 2 || len(closers) != 2 {
		t.Fatalf("chain of %d handlers, %d closers; want 2 and 2", chain.Len(), len(closers))
	}
	if got, want := chain.MaxDuration(0), 1250*time.Millisecond; got != want {
		t.Errorf("MaxDuration: got %v, want %v (250ms + the 1s default)", got, want)
	}
	rcpt := func(domain string) *envelope.Recipient {
		return &envelope.Recipient{Address: envelope.Address{Local: "x", Domain: domain}}
	}
	anon := &hook.Session{}
	authed := &hook.Session{AuthUser: "alice"}
	env := &envelope.Envelope{Sender: envelope.Address{Local: "a", Domain: "b.test"}}
	tests := []struct {
		name    string
		req     hook.Request
		handler string
		verdict sdk.Verdict
		message string
	}{
		{"first matches", hook.Request{Stage: sdk.StageRcpt, Session: authed, Envelope: env, Rcpt: rcpt("example.org")},
			"lua.first", sdk.Reject, "first: example.org"},
		{"first does not match; second does", hook.Request{Stage: sdk.StageRcpt, Session: anon, Envelope: env, Rcpt: rcpt("example.net")},
			"lua.second", sdk.Reject, "second"},
		{"neither matches", hook.Request{Stage: sdk.StageRcpt, Session: authed, Envelope: env, Rcpt: rcpt("example.net")},
			"", sdk.Continue, ""},
		{"second's error takes on_error = reject", hook.Request{Stage: sdk.StageMail, Session: anon, Envelope: env},
			"lua.second", sdk.Reject, ""},
		{"stage no script defines", hook.Request{Stage: sdk.StageHelo, Session: anon},
			"", sdk.Continue, ""},
		{"stage outside second's match", hook.Request{Stage: sdk.StageData, Session: anon, Envelope: env},
			"", sdk.Continue, ""},
		{"skip by request", hook.Request{Stage: sdk.StageRcpt, Session: anon, Envelope: env, Rcpt: rcpt("example.net"), Skip: []string{"lua.second"}},
			"", sdk.Continue, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := chain.Dispatch(context.Background(), &tt.req)
			if res.Handler != tt.handler || res.Decision.Verdict != tt.verdict || res.Decision.Message != tt.message {
				t.Errorf("got %s from %q with %q; want %s from %q with %q",
					res.Decision.Verdict, res.Handler, res.Decision.Message, tt.verdict, tt.handler, tt.message)
			}
		})
	}
}

// TestReloaderRetiresOldScripts checks that a reload closes the replaced
// scripts after the grace period, not before, and that close releases
// everything.
func TestReloaderRetiresOldScripts(t *testing.T) {
	g := newHookGateway(t, policyScript(1))
	src, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	short := strings.Replace(string(src), `timeout  = "5s"`, `timeout  = "100ms"`, 1)
	if err := os.WriteFile(g.config, []byte(short), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(g.config)
	if err != nil {
		t.Fatal(err)
	}
	deps := hookDeps{Log: slog.New(slog.DiscardHandler)}
	chain, closers, err := buildChain(context.Background(), cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReloader{
		file: g.config, running: cfg, deps: deps, live: hook.NewLive(chain), current: closers,
		log: slog.New(slog.DiscardHandler), grace: 50 * time.Millisecond,
	}
	old := chain.Dispatch // the replaced chain, as a dispatch that loaded it just before the swap holds it
	req := func() *hook.Request {
		return &hook.Request{Stage: sdk.StageRcpt, Session: &hook.Session{}, Envelope: &envelope.Envelope{},
			Rcpt: &envelope.Recipient{Address: envelope.Address{Local: "blocked", Domain: "example.test"}}}
	}

	g.writeScript(t, policyScript(2))
	if err := r.reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := r.live.Dispatch(context.Background(), req()).Decision.Message; got != "Blocked by version 2" {
		t.Errorf("after reload: %q, want version 2", got)
	}
	// Within the grace (the 100ms timeout of the lua block + 50ms) the old
	// chain still answers; after it, its script is closed.
	if got := old(context.Background(), req()).Decision.Message; got != "Blocked by version 1" {
		t.Errorf("old chain during the grace: %q, want version 1", got)
	}
	closed := func(dispatch func(context.Context, *hook.Request) hook.Result) bool {
		res := dispatch(context.Background(), req())
		return res.Decision.Verdict == sdk.Defer && strings.Contains(res.Decision.Reason, lua.ErrClosed.Error())
	}
	if !eventually(5*time.Second, func() bool { return closed(old) }) {
		t.Errorf("the replaced script was not closed after the grace period")
	}

	g.writeScript(t, brokenScript)
	if err := r.reload(context.Background()); err == nil || !strings.Contains(err.Error(), g.script+":3:") {
		t.Errorf("reload of a broken script: got %v, want an error naming %s:3", err, g.script)
	}
	if got := r.live.Dispatch(context.Background(), req()).Decision.Message; got != "Blocked by version 2" {
		t.Errorf("after a failed reload: %q, want version 2 still", got)
	}

	r.close()
	if !closed(r.live.Dispatch) {
		t.Errorf("the current script is not closed by close")
	}
	if err := r.reload(context.Background()); err == nil {
		t.Error("reload after close: got no error")
	}
}
