package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

// policyScript rejects RCPT to blocked@example.test with a text that names
// its version.
func policyScript(version int) string {
	return fmt.Sprintf(`function on_rcpt(ctx)
  if ctx.txn.rcpt == "blocked@example.test" then
    return gw.reject(550, "5.1.1", "Blocked by version %d")
  end
end
`, version)
}

// brokenScript does not compile: its error is on line 3.
const brokenScript = `-- broken on purpose
function on_rcpt(ctx)
  local x = = 1
end
`

// eventually polls cond until it holds or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
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
	set, err := buildHooks(context.Background(), cfg, hookDeps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.close()
	chain := set.chain
	if chain.Len() != 2 || len(set.closers) != 2 {
		t.Fatalf("chain of %d handlers, %d closers; want 2 and 2", chain.Len(), len(set.closers))
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
			"lua.second", sdk.Reject, "Local processing error"},
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

// TestPipelineRetiresOldScripts checks that a reload closes the replaced
// scripts after the grace period, not before, and that close releases
// everything.
func TestPipelineRetiresOldScripts(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "policy.lua")
	writeScript := func(src string) {
		t.Helper()
		if err := os.WriteFile(script, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeScript(policyScript(1))
	path := filepath.Join(dir, "gateway.hcl")
	hcl := `
listener "mx" { address = "127.0.0.1:0" }
lua "policy" {
  path    = "policy.lua"
  timeout = "100ms"
}
`
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newPipeline(context.Background(), cfg, hookDeps{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	r.grace = 50 * time.Millisecond
	old := r.live.Chain().Dispatch // the replaced chain, as a dispatch that loaded it just before the swap holds it
	req := func() *hook.Request {
		return &hook.Request{Stage: sdk.StageRcpt, Session: &hook.Session{}, Envelope: &envelope.Envelope{},
			Rcpt: &envelope.Recipient{Address: envelope.Address{Local: "blocked", Domain: "example.test"}}}
	}

	writeScript(policyScript(2))
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

	writeScript(brokenScript)
	if err := r.reload(context.Background()); err == nil || !strings.Contains(err.Error(), script+":3:") {
		t.Errorf("reload of a broken script: got %v, want an error naming %s:3", err, script)
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

// TestPluginChecksumNamesLine: a plugin binary whose SHA-256 is not the
// configured one is refused with the file:line of the sha256 setting.
func TestPluginChecksumNamesLine(t *testing.T) {
	exe, err := os.Executable() // any executable: the digest is checked before it runs
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	hcl := `listener "mx" { address = "127.0.0.1:0" }
plugin "p" {
  path   = "` + exe + `"
  sha256 = "` + strings.Repeat("0", 64) + `"
}
`
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = buildHooks(context.Background(), cfg, hookDeps{Log: slog.New(slog.DiscardHandler)})
	if want := path + ":4: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want an error starting %q", err, want)
	}
}

// TestTransportSetIdle: a replaced set of plugin transports is idle only
// once the deliveries running through it have ended.
func TestTransportSetIdle(t *testing.T) {
	ts := &transportSet{}
	ts.idle(nil) // none running: at once
	ts.begin()
	ts.begin()
	idle := make(chan struct{})
	go func() { ts.idle(nil); close(idle) }()
	ts.end()
	select {
	case <-idle:
		t.Fatal("idle with a delivery still running")
	case <-time.After(50 * time.Millisecond):
	}
	ts.end()
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("not idle after the last delivery ended")
	}
	ts.begin()
	stop := make(chan struct{})
	close(stop)
	ts.idle(stop) // a stop cuts the wait short
}

// TestDeadAddressTTL: dead_host_ttl = "0" turns the SMTP transport's
// dead-host cache off (a negative TTL there; 0 would be its default).
func TestDeadAddressTTL(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{0: -1, time.Second: time.Second, time.Minute: time.Minute} {
		if got := deadAddressTTL(in); got != want {
			t.Errorf("deadAddressTTL(%v) = %v, want %v", in, got, want)
		}
	}
}
