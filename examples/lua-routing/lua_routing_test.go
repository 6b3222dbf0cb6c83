package luarouting_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// TestTranscript loads this folder's gateway.hcl, builds the hook chain
// the way `gateway serve` does, starts the SMTP server of its listener (on
// 127.0.0.1:0 instead of its port), replays transcript.txt and checks
// what was queued.
func TestTranscript(t *testing.T) {
	cfg, err := config.Load("gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(cfg.Listeners))
	}
	chain := buildChain(t, cfg)
	spool := &smtptest.MemorySpool{}
	addr, _ := smtptest.StartServer(t, smtp.Options{
		Hostname:           cfg.Hostname,
		Listener:           cfg.Listeners[0],
		LocalDomains:       cfg.Domains,
		RelayNetworks:      cfg.Relay.Networks,
		RelayAuthenticated: cfg.Relay.Authenticated,
		Auth:               smtp.NewPasswordTable(cfg.Auth.Users),
		Hooks:              chain,
		Spool:              spool,
	})
	script, err := os.ReadFile("transcript.txt")
	if err != nil {
		t.Fatal(err)
	}
	smtptest.Run(t, addr, string(script))

	msgs := spool.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages queued, want 2", len(msgs))
	}

	// 1: the aliases expanded, the sender rewritten with SRS because
	// dave@partner.test is outside, the gateway's header added.
	m := msgs[0]
	wantList(t, "message 1 recipients", rcpts(m), []string{
		"alice@example.test", "bob@example.test", "dave@partner.test", "postmaster@example.test",
	})
	srs := regexp.MustCompile(`^SRS0=[A-Z2-7]{4}=[A-Z2-7]{2}=sender\.test=carol@example\.test$`)
	if s := m.Envelope.Sender.String(); !srs.MatchString(s) {
		t.Errorf("message 1 sender = %q, want an SRS0 address", s)
	}
	wantList(t, "message 1 X-Gateway", header(m, "X-Gateway"), []string{"mx.example.test"})

	// 2: masqueraded in the envelope and in From, internal field gone.
	m = msgs[1]
	wantList(t, "message 2 recipients", rcpts(m), []string{"bob@partner.test"})
	if s := m.Envelope.Sender.String(); s != "alice@example.test" {
		t.Errorf("message 2 sender = %q, want alice@example.test", s)
	}
	wantList(t, "message 2 From", header(m, "From"), []string{"Alice <alice@example.test>"})
	wantList(t, "message 2 X-Internal-Id", header(m, "X-Internal-Id"), nil)
	wantList(t, "message 2 X-Gateway", header(m, "X-Gateway"), []string{"mx.example.test"})
	wantList(t, "message 2 Subject", header(m, "Subject"), []string{"Quote"})

	// Delivery: the predelivery stage routes partner.test to its next hop.
	rcpt := msgs[1].Envelope.Recipients[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := chain.Dispatch(ctx, &hook.Request{
		Stage:    sdk.StagePredelivery,
		Envelope: &msgs[1].Envelope,
		Rcpt:     &rcpt,
		Arg:      "partner.test",
	})
	if want := (sdk.Route{Transport: "smtp", Via: "127.0.0.1:2626"}); res.Effects.Route == nil || *res.Effects.Route != want {
		t.Errorf("predelivery route for partner.test = %+v, want %+v", res.Effects.Route, want)
	}
	local := envelope.Recipient{Address: envelope.Address{Local: "alice", Domain: "example.test"}}
	res = chain.Dispatch(ctx, &hook.Request{
		Stage:    sdk.StagePredelivery,
		Envelope: &msgs[0].Envelope,
		Rcpt:     &local,
		Arg:      "example.test",
	})
	if res.Effects.Route != nil {
		t.Errorf("predelivery route for example.test = %+v, want none (the maildir route stands)", res.Effects.Route)
	}
}

// buildChain loads cfg's lua blocks in pipeline order with their timeout,
// on_error and match, as `gateway serve` does; gw.kv is a spool in a
// temporary folder (not the example's data_dir).
func buildChain(t *testing.T, cfg *config.Config) *hook.Chain {
	t.Helper()
	kv, err := queue.Open(filepath.Join(t.TempDir(), "queue"), queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	blocks := make(map[string]config.LuaHook)
	for _, h := range cfg.Lua {
		blocks[h.PipelineName()] = h
	}
	var entries []hook.Entry
	for _, name := range cfg.Pipeline {
		h, ok := blocks[name]
		if !ok {
			t.Fatalf("pipeline entry %s has no lua block", name)
		}
		var match func(*hook.Request) bool
		if !h.Match.IsZero() {
			if match, err = hook.NewMatch(h.Match); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
		s, err := lua.Load(lua.Options{Name: h.Name, Path: h.Path, Params: h.Params, KV: kv, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		entries = append(entries, hook.Entry{
			Handler: s,
			Timeout: h.Timeout,
			OnError: hook.OnError(h.OnError),
			Match:   match,
			Stages:  h.Match.Stages,
		})
	}
	return hook.NewChain(log, entries...)
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func rcpts(m smtptest.Message) []string {
	var out []string
	for _, r := range m.Envelope.Recipients {
		out = append(out, r.Address.String())
	}
	slices.Sort(out)
	return out
}

// header returns the trimmed values of the fields called name.
func header(m smtptest.Message, name string) []string {
	head, _, _ := strings.Cut(string(m.Data()), "\r\n\r\n")
	var out []string
	for _, line := range strings.Split(head, "\r\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func wantList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}
