package scripts

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
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
			m := onlyMessage(t, g)
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
			m := onlyMessage(t, g)
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
// predelivery stage per destination domain and delivers each job where
// the script's route says: a next hop named by the route, or the MX of
// the domain (both real SMTP servers on loopback).
func TestTranslateDelivery(t *testing.T) {
	routed, byMX := &smtptest.MemorySpool{}, &smtptest.MemorySpool{}
	routedAddr, _ := smtptest.StartServer(t, smtp.Options{RelayNetworks: []netip.Prefix{smtptest.Loopback()}, Spool: routed})
	mxAddr, _ := smtptest.StartServer(t, smtp.Options{RelayNetworks: []netip.Prefix{smtptest.Loopback()}, Spool: byMX})
	_, mxPort, _ := net.SplitHostPort(mxAddr)
	dns := resolvertest.Start(t, `
elsewhere.test.    IN MX 10 mx.elsewhere.test.
mx.elsewhere.test. IN A 127.0.0.1
`)
	delivery := fmt.Sprintf("delivery {\n  resolver = %q\n  port = %s\n}\n", dns.Addr(), mxPort)
	g := startGateway(t, testConfigDelivery(`["example.test"]`, delivery, `
pipeline = ["lua.translate"]
lua "translate" {
  path   = "{{scripts}}/translate.lua"
  params = {
    masquerade = { from = "internal.example", to = "example.test" }
    routes = [{ match = "*.partner.test", transport = "smtp", via = "`+routedAddr+`" }]
  }
}
`))
	c := open(t, g, "alice")
	c.Run(`
		C: MAIL FROM:<joe@internal.example>
		S: 250 2.1.0 Ok
		C: RCPT TO:<ann@eu.partner.test>
		S: 250 2.1.5 Ok
		C: RCPT TO:<cid@elsewhere.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"From: Joe <joe@internal.example>", "Subject: out"}, "hello"))

	deadline := time.Now().Add(10 * time.Second)
	for len(routed.Messages()) < 1 || len(byMX.Messages()) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: routed %d, by MX %d; want 1 and 1", len(routed.Messages()), len(byMX.Messages()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for name, tt := range map[string]struct {
		spool *smtptest.MemorySpool
		rcpt  string
	}{"routed": {routed, "ann@eu.partner.test"}, "by MX": {byMX, "cid@elsewhere.test"}} {
		m := tt.spool.Messages()[0]
		if got := m.Envelope.Sender.String(); got != "joe@example.test" {
			t.Errorf("%s: sender %q, want joe@example.test", name, got)
		}
		if len(m.Envelope.Recipients) != 1 || m.Envelope.Recipients[0].Address.String() != tt.rcpt {
			t.Errorf("%s: recipients %v, want %s", name, m.Envelope.Recipients, tt.rcpt)
		}
		if !bytes.Contains(m.Data(), []byte("From: Joe <joe@example.test>\r\n")) {
			t.Errorf("%s: From not masqueraded:\n%s", name, m.Data())
		}
	}
}
