package luarouting_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestTranscript runs this folder's gateway.hcl as `gateway serve` would
// (core/gateway, in-process), moved onto 127.0.0.1:0 with its data in a
// temporary folder and partner.test's next hop (translate.lua's route) a
// real SMTP server on loopback; it replays transcript.txt and checks what
// was delivered: the local Maildirs and the partner's server.
func TestTranscript(t *testing.T) {
	cfg, err := config.Load("gateway.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 1 {
		t.Fatalf("%d listeners, want 1", len(cfg.Listeners))
	}
	gatewaytest.Relocate(t, cfg)
	partner := &smtptest.MemorySpool{}
	partnerAddr, _ := smtptest.StartServer(t, smtp.Options{RelayNetworks: []netip.Prefix{smtptest.Loopback()}, Spool: partner})
	setPartnerRoute(t, cfg, partnerAddr)
	g := gatewaytest.StartConfig(t, cfg)
	script, err := os.ReadFile("transcript.txt")
	if err != nil {
		t.Fatal(err)
	}
	smtptest.Run(t, g.Addr(t, "mx"), string(script))

	// 1: the aliases expanded into the local Maildirs, and dave@partner.test
	// (outside) reached with the sender rewritten by SRS; the gateway's
	// header added. 2: masqueraded in the envelope and in From, internal
	// field gone, tagged for the partner.
	maildir := filepath.Join(cfg.DataDir, "mail", "example.test")
	for _, user := range []string{"alice", "bob", "postmaster"} {
		m := waitMaildir(t, filepath.Join(maildir, user, "new"))
		wantList(t, user+"'s X-Gateway", header(m, "X-Gateway"), []string{"mx.example.test"})
	}
	msgs := waitMessages(t, partner, 2)
	slices.SortFunc(msgs, func(a, b smtptest.Message) int { return strings.Compare(rcpts(a)[0], rcpts(b)[0]) })
	m := msgs[1]
	wantList(t, "message 1 recipients at the partner", rcpts(m), []string{"dave@partner.test"})
	srs := regexp.MustCompile(`^SRS0=[A-Z2-7]{4}=[A-Z2-7]{2}=sender\.test=carol@example\.test$`)
	if s := m.Envelope.Sender.String(); !srs.MatchString(s) {
		t.Errorf("message 1 sender = %q, want an SRS0 address", s)
	}
	wantList(t, "message 1 X-Gateway", header(m, "X-Gateway"), []string{"mx.example.test"})

	m = msgs[0]
	wantList(t, "message 2 recipients", rcpts(m), []string{"bob@partner.test"})
	if s := m.Envelope.Sender.String(); s != "alice@example.test" {
		t.Errorf("message 2 sender = %q, want alice@example.test", s)
	}
	wantList(t, "message 2 From", header(m, "From"), []string{"Alice <alice@example.test>"})
	wantList(t, "message 2 X-Internal-Id", header(m, "X-Internal-Id"), nil)
	wantList(t, "message 2 X-Gateway", header(m, "X-Gateway"), []string{"mx.example.test"})
	wantList(t, "message 2 Subject", header(m, "Subject"), []string{"Quote"})
}

// setPartnerRoute points translate.lua's route for partner.test at addr.
func setPartnerRoute(t *testing.T, cfg *config.Config, addr string) {
	t.Helper()
	for _, h := range cfg.Lua {
		if h.Name != "translate" {
			continue
		}
		routes, _ := h.Params["routes"].([]any)
		if len(routes) != 1 {
			t.Fatalf("translate's routes = %v, want one", h.Params["routes"])
		}
		routes[0].(map[string]any)["via"] = addr
		return
	}
	t.Fatal("no lua block translate")
}

// waitMaildir waits for the one message in the Maildir folder dir.
func waitMaildir(t *testing.T, dir string) smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(files) == 1 {
			b, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			return smtptest.Message{Body: b}
		}
		if len(files) > 1 || time.Now().After(deadline) {
			t.Fatalf("%s holds %d messages, want 1", dir, len(files))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitMessages waits until s holds n messages.
func waitMessages(t *testing.T, s *smtptest.MemorySpool, n int) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Messages()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the partner's server got %d messages, want %d", len(s.Messages()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.Messages()
}

func rcpts(m smtptest.Message) []string {
	var out []string
	for _, r := range m.Envelope.Recipients {
		out = append(out, r.Address.String())
	}
	slices.Sort(out)
	return out
}

// header returns the trimmed values of the fields called name; the lines
// may end in CRLF (SMTP) or LF (Maildir).
func header(m smtptest.Message, name string) []string {
	head, _, _ := strings.Cut(strings.ReplaceAll(string(m.Data()), "\r\n", "\n"), "\n\n")
	var out []string
	for _, line := range strings.Split(head, "\n") {
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
