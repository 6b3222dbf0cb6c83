package scripts

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// testPassword is the password of every user in a test config's auth block
// ({{hash}} in the config text is its bcrypt hash).
const testPassword = "secret"

// gateway is the part of `gateway serve` that receives mail, built from a
// gateway.hcl whose lua blocks point at the scripts of this folder.
type gateway struct {
	Addr   string
	Config *config.Config
	Chain  *hook.Chain
	Spool  *smtptest.MemorySpool // what the server queued
	KV     *queue.Spool          // behind gw.kv
}

// startGateway writes hcl to a gateway.hcl in a temporary folder and starts
// a gateway for its first listener on 127.0.0.1:0. In hcl, {{scripts}} is
// the absolute path of this folder and {{hash}} the bcrypt hash of
// testPassword. The chain is built the way serve builds it: one lua.Load
// per lua block, in pipeline order, with its timeout, on_error and match.
// The edits may change the server's options before it starts.
func startGateway(t testing.TB, hcl string, edits ...func(*gateway, *smtp.Options)) *gateway {
	t.Helper()
	dir := t.TempDir()
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hcl = strings.NewReplacer("{{scripts}}", here, "{{hash}}", string(hash)).Replace(hcl)
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	kv, err := queue.Open(filepath.Join(dir, "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })

	g := &gateway{Config: cfg, Spool: &smtptest.MemorySpool{}, KV: kv}
	g.Chain = buildChain(t, cfg, kv)
	var auth smtp.Authenticator
	if len(cfg.Auth.Users) > 0 {
		auth = smtp.NewPasswordTable(cfg.Auth.Users)
	}
	opt := smtp.Options{
		Hostname:           cfg.Hostname,
		Listener:           cfg.Listeners[0],
		LocalDomains:       cfg.Domains,
		RelayNetworks:      cfg.Relay.Networks,
		RelayAuthenticated: cfg.Relay.Authenticated,
		Auth:               auth,
		Hooks:              g.Chain,
		Spool:              g.Spool,
	}
	for _, edit := range edits {
		edit(g, &opt)
	}
	g.Addr, _ = smtptest.StartServer(t, opt)
	return g
}

// buildChain loads the config's lua blocks in pipeline order.
func buildChain(t testing.TB, cfg *config.Config, kv lua.KV) *hook.Chain {
	t.Helper()
	byName := make(map[string]config.LuaHook)
	for _, h := range cfg.Lua {
		byName[h.PipelineName()] = h
	}
	var entries []hook.Entry
	for _, name := range cfg.Pipeline {
		h, ok := byName[name]
		if !ok {
			t.Fatalf("pipeline entry %q is not a lua block", name)
		}
		s, err := lua.Load(lua.Options{Name: h.Name, Path: h.Path, Params: h.Params, KV: kv})
		if err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
		t.Cleanup(s.Close)
		m, err := hook.NewMatch(h.Match)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		entries = append(entries, hook.Entry{
			Handler: s,
			Timeout: h.Timeout,
			OnError: hook.OnError(h.OnError),
			Match:   m,
			Stages:  h.Match.Stages,
		})
	}
	return hook.NewChain(testLog(t), entries...)
}

// testLog logs to t at info level.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// testConfig returns a gateway.hcl for tests: domain example.test, no
// relay networks, alice and bob as users (password testPassword), AUTH
// allowed without TLS, and then blocks (the lua blocks and a pipeline).
func testConfig(blocks string) string {
	return testConfigDomains(`["example.test"]`, blocks)
}

// testConfigDomains is testConfig with other domains (an HCL list).
func testConfigDomains(domains, blocks string) string {
	return `
hostname = "mx.example.test"
domains  = ` + domains + `
listener "mx" {
  address       = "127.0.0.1:0"
  auth_insecure = true
}
relay {
  networks = []
}
auth {
  users = { alice = "{{hash}}", bob = "{{hash}}" }
}
` + blocks
}

// authPlain is the AUTH PLAIN command line for user with testPassword.
func authPlain(user string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+testPassword))
}

// recipients returns the envelope recipients of m as strings.
func recipients(m smtptest.Message) []string {
	var out []string
	for _, r := range m.Envelope.Recipients {
		out = append(out, r.Address.String())
	}
	return out
}

// headerValues returns the values of the header fields called name in the
// stored message (the server's header then the content's), unfolded and
// trimmed.
func headerValues(m smtptest.Message, name string) []string {
	head, _, _ := strings.Cut(string(m.Data()), "\r\n\r\n")
	var out []string
	var cur *string
	for _, line := range strings.Split(head, "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if cur != nil {
				*cur += " " + strings.TrimSpace(line)
			}
			continue
		}
		cur = nil
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(n, name) {
			out = append(out, strings.TrimSpace(v))
			cur = &out[len(out)-1]
		}
	}
	return out
}

// onlyMessage returns the one message the spool holds.
func onlyMessage(t testing.TB, s *smtptest.MemorySpool) smtptest.Message {
	t.Helper()
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("spool holds %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

func wantStrings(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// sendMessage is the DATA part of a transcript: the message given as
// header lines and a body line, then the final reply expected.
func sendMessage(header []string, body string) string {
	var b strings.Builder
	b.WriteString("C: DATA\nS: 354 *\n")
	for _, h := range header {
		fmt.Fprintf(&b, "C: %s\n", h)
	}
	fmt.Fprintf(&b, "C:\nC: %s\nC: .\nS: 250 2.0.0 Ok: queued as *\n", body)
	return b.String()
}

// ctxTimeout is a context for direct calls.
func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}
