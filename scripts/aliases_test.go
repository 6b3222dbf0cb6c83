package scripts

import (
	"strings"
	"testing"
	"time"
)

// What aliases.lua does is in twins_test.go, the cases it shares with
// plugins/aliases; here is what depends on its own params.

const aliasesParams = `{
    aliases = {
      "info@example.test"  = ["alice@example.test", "bob@example.test"]
      "team@example.test"  = ["info@example.test", "carol@example.test"]
      "both@example.test"  = ["info@example.test", "team@example.test", "ALICE@example.test"]
      "keep@example.test"  = ["keep@example.test", "alice@example.test"]
      "sales@example.test" = ["dave@partner.test", "alice@example.test"]
      "loop1@example.test" = ["loop2@example.test"]
      "loop2@example.test" = ["alice@example.test", "loop1@example.test"]
      "self@example.test"  = ["self@example.test"]
      "lost@example.test"  = ["zed@example.test"]
      "@example.test"      = ["catchall@example.test"]
      "@example.net"       = ["info@example.test"]
    }
    mailboxes     = ["Alice@example.test", "bob@example.test", "carol@example.test"]
    local_domains = ["example.test", "example.net"]
    srs_domain    = "example.test"
    srs_secret    = "s3cret"
  }`

func aliasesConfig(params string) string {
	return testConfigDomains(`["example.test", "example.net"]`, `
pipeline = ["lua.aliases"]
lua "aliases" {
  path   = "{{scripts}}/aliases.lua"
  params = `+params+`
}
`)
}

// TestAliasesExpand sends one message to each address and checks the
// envelope recipients it was queued for.
func TestAliasesExpand(t *testing.T) {
	tests := []struct {
		name string
		rcpt string
		want []string
	}{
		{"alias", "info@example.test", []string{"alice@example.test", "bob@example.test"}},
		{"alias in other case", "INFO@Example.TEST", []string{"alice@example.test", "bob@example.test"}},
		{"nested", "team@example.test", []string{"alice@example.test", "bob@example.test", "carol@example.test"}},
		{"duplicates once", "both@example.test", []string{"alice@example.test", "bob@example.test", "carol@example.test"}},
		{"alias keeps a copy", "keep@example.test", []string{"keep@example.test", "alice@example.test"}},
		{"alias of itself only", "self@example.test", []string{"self@example.test"}},
		{"catch-all", "nobody@example.test", []string{"catchall@example.test"}},
		{"catch-all target is not caught again", "catchall@example.test", []string{"catchall@example.test"}},
		{"a target that is no mailbox is caught", "lost@example.test", []string{"catchall@example.test"}},
		{"mailbox, not caught", "alice@EXAMPLE.test", []string{"alice@EXAMPLE.test"}},
		{"mailbox", "bob@example.test", []string{"bob@example.test"}},
		{"catch-all of another domain, expanded", "anyone@example.net", []string{"alice@example.test", "bob@example.test"}},
	}
	g := startGateway(t, aliasesConfig(aliasesParams))
	c := open(t, g, "")
	for _, tt := range tests {
		c.Run(`
			C: MAIL FROM:<alice@example.test>
			S: 250 2.1.0 Ok
			C: RCPT TO:<` + tt.rcpt + `>
			S: 250 2.1.5 Ok
		` + sendMessage([]string{"Subject: " + tt.name}, "hi"))
	}
	msgs := g.Queued(t)
	if len(msgs) != len(tests) {
		t.Fatalf("%d messages queued, want %d", len(msgs), len(tests))
	}
	for i, tt := range tests {
		wantStrings(t, tt.name, recipients(msgs[i]), tt.want)
	}
}

func TestAliasesRefused(t *testing.T) {
	g := startGateway(t, aliasesConfig(aliasesParams))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<alice@example.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<loop1@example.test>
		S: 550 5.4.6 Alias loop detected
		C: RCPT TO:<loop2@example.test>
		S: 550 5.4.6 Alias loop detected
		# Not an alias, not a local domain: the built-in rule refuses to relay.
		C: RCPT TO:<info@example.org>
		S: 550 5.7.1 Relay access denied
		C: RCPT TO:<info@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage(nil, "hi"))
	wantStrings(t, "recipients", recipients(onlyMessage(t, g)), []string{"alice@example.test", "bob@example.test"})
}

// Without srs_domain, mail forwarded out keeps its sender.
func TestAliasesNoSRSDomain(t *testing.T) {
	g := startGateway(t, aliasesConfig(`{ aliases = { "sales@example.test" = ["dave@partner.test"] } }`))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<carol@sender.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<sales@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage(nil, "hi"))
	if got := onlyMessage(t, g).Envelope.Sender.String(); got != "carol@sender.test" {
		t.Errorf("sender = %q, want carol@sender.test", got)
	}
}

// EXPN answers trusted clients only, and only with expn = true.
func TestAliasesExpn(t *testing.T) {
	const untrusted = `
		C: EXPN info@example.test
		S: 502 5.5.1 EXPN not available
	`
	const trusted = `
		C: EXPN info@example.test
		S: 250-2.1.5 <alice@example.test>
		S: 250 2.1.5 <bob@example.test>
		C: EXPN <TEAM@example.test>
		S: 250-2.1.5 <alice@example.test>
		S: 250-2.1.5 <bob@example.test>
		S: 250 2.1.5 <carol@example.test>
		C: EXPN loop1@example.test
		S: 550 5.4.6 Alias loop detected
		C: EXPN alice@example.test
		S: 502 5.5.1 EXPN not available
		C: EXPN self@example.test
		S: 502 5.5.1 EXPN not available
	`
	tests := []struct {
		name, expn, networks, user, script string
	}{
		{"anonymous", "true", `["10.0.0.0/8"]`, "", untrusted},
		{"authenticated", "true", `[]`, "alice", trusted},
		{"from expn_networks", "true", `["127.0.0.0/8"]`, "", trusted},
		{"expn off", "false", `["127.0.0.0/8"]`, "alice", untrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, aliasesConfig(moreParams(aliasesParams, "expn = "+tt.expn, "expn_networks = "+tt.networks)))
			c := open(t, g, tt.user)
			c.Run(tt.script)
		})
	}
}

// srsHash is aliases.lua's keyed hash, written again in Go: the test pins
// the documented algorithm down.
func srsHash(secret string, fields ...string) string {
	data := secret + "\x00" + strings.ToLower(strings.Join(fields, "\x00")) + "\x00" + secret
	h := int64(5381)
	for i := 0; i < len(data); i++ {
		h = (h*257 + int64(data[i])) % 16777213
	}
	return base32(h%(1<<20), 4)
}

// srsDay is the SRS timestamp of t: the day number modulo 1024 in base32.
func srsDay(t time.Time) string { return base32(t.Unix()/86400%1024, 2) }

func srsAddress(secret, tt, domain, local, srsDomain string) string {
	return "SRS0=" + srsHash(secret, tt, domain, local) + "=" + tt + "=" + domain + "=" + local + "@" + srsDomain
}

func base32(n int64, width int) string {
	const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = digits[n%32]
		n /= 32
	}
	return string(b)
}
