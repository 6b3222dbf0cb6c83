package scripts

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
)

const translateParams = `{
    masquerade    = { from = "internal.example", to = "example.test", headers = ["From", "Reply-To"] }
    add_headers   = { "X-Gateway" = "edge", "X-Another" = "one" }
    strip_headers = ["X-Internal-Id"]
    tag_subject   = { match = "*@partner.test", tag = "[partner]" }
    routes = [
      { match = "*.partner.test", transport = "smtp", via = "127.0.0.1:2626" },
      { match = "partner.test", via = "127.0.0.1:2727" },
    ]
  }`

func translateConfig(params string) string {
	return testConfig(`
pipeline = ["lua.translate"]
lua "translate" {
  path   = "{{scripts}}/translate.lua"
  params = ` + params + `
}
`)
}

func TestTranslateMasquerade(t *testing.T) {
	tests := []struct {
		name       string
		sender     string
		from       string // From field
		wantSender string
		wantFrom   string
	}{
		{"internal domain", "joe@internal.example", "Joe <joe@internal.example>", "joe@example.test", "Joe <joe@example.test>"},
		{"subdomain, other case", "joe@Host.Internal.Example", "joe@host.INTERNAL.example (Joe)", "joe@example.test", "joe@example.test (Joe)"},
		{"other domain", "joe@partner.test", "Joe <joe@partner.test>", "joe@partner.test", "Joe <joe@partner.test>"},
		{"look-alike domain", "joe@notinternal.example", "joe@notinternal.example", "joe@notinternal.example", "joe@notinternal.example"},
		{"null sender", "", "MAILER-DAEMON@internal.example", "", "MAILER-DAEMON@example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, translateConfig(translateParams))
			c := open(t, g, "")
			c.Run(`
				C: MAIL FROM:<` + tt.sender + `>
				S: 250 2.1.0 Ok
				C: RCPT TO:<alice@example.test>
				S: 250 2.1.5 Ok
			` + sendMessage([]string{
				"From: " + tt.from,
				"Reply-To: desk@internal.example, other@elsewhere.test",
				"Subject: hi",
			}, "hello"))
			m := onlyMessage(t, g.Spool)
			if got := m.Envelope.Sender.String(); got != tt.wantSender {
				t.Errorf("sender = %q, want %q", got, tt.wantSender)
			}
			wantStrings(t, "From", headerValues(m, "From"), []string{tt.wantFrom})
			wantStrings(t, "Reply-To", headerValues(m, "Reply-To"), []string{"desk@example.test, other@elsewhere.test"})
		})
	}
}

func TestTranslateHeaders(t *testing.T) {
	tests := []struct {
		name    string
		sender  string
		subject []string // Subject fields sent
		want    []string // Subject fields queued
	}{
		{"partner", "p@partner.test", []string{"Subject: hello"}, []string{"[partner] hello"}},
		{"partner, other case", "P@Partner.Test", []string{"Subject: hello"}, []string{"[partner] hello"}},
		{"partner, tagged already", "p@partner.test", []string{"Subject: Re: [partner] hello"}, []string{"Re: [partner] hello"}},
		{"partner, no subject", "p@partner.test", nil, []string{"[partner]"}},
		{"partner subdomain does not match the glob", "p@eu.partner.test", []string{"Subject: hello"}, []string{"hello"}},
		{"other sender", "joe@elsewhere.test", []string{"Subject: hello"}, []string{"hello"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, translateConfig(translateParams))
			c := open(t, g, "")
			header := append([]string{
				"From: someone@elsewhere.test",
				"X-Internal-Id: 1234",
				"X-Internal-Id: 5678",
			}, tt.subject...)
			c.Run(`
				C: MAIL FROM:<` + tt.sender + `>
				S: 250 2.1.0 Ok
				C: RCPT TO:<alice@example.test>
				S: 250 2.1.5 Ok
			` + sendMessage(header, "hello"))
			m := onlyMessage(t, g.Spool)
			wantStrings(t, "Subject", headerValues(m, "Subject"), tt.want)
			wantStrings(t, "X-Internal-Id", headerValues(m, "X-Internal-Id"), nil)
			wantStrings(t, "X-Gateway", headerValues(m, "X-Gateway"), []string{"edge"})
			wantStrings(t, "X-Another", headerValues(m, "X-Another"), []string{"one"})
		})
	}
}

// Routes are decided at predelivery, in the delivery engine: the script's
// Handle is called here as the engine calls it, through a chain.
func TestTranslateRoutes(t *testing.T) {
	src, err := os.ReadFile("translate.lua")
	if err != nil {
		t.Fatal(err)
	}
	s, err := lua.Load(lua.Options{Name: "translate", Source: string(src), Params: map[string]any{
		"routes": []any{
			map[string]any{"match": "*.partner.test", "transport": "smtp", "via": "127.0.0.1:2626"},
			map[string]any{"match": "partner.test", "via": "127.0.0.1:2727"},
			map[string]any{"match": "*.lmtp.test", "transport": "lmtp"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	chain := hook.NewChain(testLog(t), hook.Entry{Handler: s, OnError: hook.OnErrorDefer})
	tests := []struct {
		domain string
		want   *sdk.Route
	}{
		{"eu.partner.test", &sdk.Route{Transport: "smtp", Via: "127.0.0.1:2626"}},
		{"EU.Partner.Test", &sdk.Route{Transport: "smtp", Via: "127.0.0.1:2626"}},
		{"partner.test", &sdk.Route{Via: "127.0.0.1:2727"}},
		{"a.lmtp.test", &sdk.Route{Transport: "lmtp"}},
		{"elsewhere.test", nil},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			rcpt := envelope.Recipient{Address: envelope.Address{Local: "bob", Domain: tt.domain}}
			res := chain.Dispatch(ctxTimeout(t), &hook.Request{
				Stage:    sdk.StagePredelivery,
				Envelope: &envelope.Envelope{Sender: envelope.Address{Local: "alice", Domain: "example.test"}, Recipients: []envelope.Recipient{rcpt}},
				Rcpt:     &rcpt,
				Arg:      tt.domain,
			})
			if res.Decision.Verdict != sdk.Continue {
				t.Errorf("verdict %v, want continue", res.Decision.Verdict)
			}
			got := res.Effects.Route
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("route = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestTranslateDelivery runs the whole path: the SMTP server queues into
// the spool, the delivery engine picks the message up, runs the
// predelivery stage per destination domain and hands each job to the
// transport the script's route names (recording transports here).
func TestTranslateDelivery(t *testing.T) {
	smtpOut, lmtpOut := &deliverytest.Transport{}, &deliverytest.Transport{}
	g := startGateway(t, translateConfig(`{
    masquerade = { from = "internal.example", to = "example.test" }
    routes = [
      { match = "*.partner.test", transport = "smtp", via = "127.0.0.1:2626" },
      { match = "*.lmtp.test", transport = "lmtp", via = "127.0.0.1:2424" },
    ]
  }`), func(g *gateway, o *smtp.Options) {
		eng, err := delivery.New(delivery.Options{
			Spool:      g.KV,
			Hostname:   g.Config.Hostname,
			Transports: map[string]delivery.Transport{"smtp": smtpOut, "lmtp": lmtpOut},
			Hooks:      g.Chain,
			Log:        testLog(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- eng.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		o.Spool = engineSpool{g.KV, eng}
		o.RelayNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<joe@internal.example>
		S: 250 2.1.0 Ok
		C: RCPT TO:<ann@eu.partner.test>
		S: 250 2.1.5 Ok
		C: RCPT TO:<bob@box.lmtp.test>
		S: 250 2.1.5 Ok
		C: RCPT TO:<cid@elsewhere.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"From: Joe <joe@internal.example>", "Subject: out"}, "hello"))

	deadline := time.Now().Add(10 * time.Second)
	for smtpOut.NumCalls() < 2 || lmtpOut.NumCalls() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: smtp %d, lmtp %d; want 2 and 1", smtpOut.NumCalls(), lmtpOut.NumCalls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	routes := map[string]delivery.Route{}
	for _, call := range append(smtpOut.Calls(), lmtpOut.Calls()...) {
		routes[call.Job.Domain] = call.Job.Route
		if s := call.Job.Envelope.Sender.String(); s != "joe@example.test" {
			t.Errorf("%s: sender %q, want joe@example.test", call.Job.Domain, s)
		}
		if !bytes.Contains(call.Body, []byte("From: Joe <joe@example.test>\r\n")) {
			t.Errorf("%s: From not masqueraded:\n%s", call.Job.Domain, call.Body)
		}
	}
	want := map[string]delivery.Route{
		"eu.partner.test": {Transport: "smtp", Via: "127.0.0.1:2626"},
		"box.lmtp.test":   {Transport: "lmtp", Via: "127.0.0.1:2424"},
		"elsewhere.test":  {Transport: "smtp"},
	}
	for domain, w := range want {
		got, ok := routes[domain]
		if !ok || got.Transport != w.Transport || got.Via != w.Via {
			t.Errorf("%s: route %+v, want transport %q via %q", domain, got, w.Transport, w.Via)
		}
	}
}

// engineSpool is serve's spool adapter: the queue, and a kick to the
// engine after each commit.
type engineSpool struct {
	q *queue.Spool
	e *delivery.Engine
}

func (s engineSpool) Create(ctx context.Context) (smtp.Draft, error) {
	d, err := s.q.Create(ctx)
	if err != nil {
		return nil, err
	}
	return engineDraft{d, s.e}, nil
}

type engineDraft struct {
	*queue.Draft
	e *delivery.Engine
}

func (d engineDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	if err := d.Draft.Commit(ctx, env, header); err != nil {
		return err
	}
	d.e.Enqueue(d.ID())
	return nil
}
