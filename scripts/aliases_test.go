package scripts

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

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
      "@example.test"      = ["catchall@example.test"]
      "@example.net"       = ["info@example.test"]
    }
    mailboxes     = ["Alice@example.test", "bob@example.test"]
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
		S: 550 5.4.6 Alias loop
		C: RCPT TO:<loop2@example.test>
		S: 550 5.4.6 Alias loop
		# Not an alias, not a local domain: the built-in rule refuses to relay.
		C: RCPT TO:<info@example.org>
		S: 550 5.7.1 Relay access denied
		C: RCPT TO:<info@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage(nil, "hi"))
	wantStrings(t, "recipients", recipients(onlyMessage(t, g)), []string{"alice@example.test", "bob@example.test"})
}

var srsPattern = regexp.MustCompile(`^SRS0=([A-Z2-7]{4})=([A-Z2-7]{2})=sender\.test=carol@example\.test$`)

// Mail forwarded outside the local domains gets an SRS sender; the SRS
// address leads back to the original sender, and only while it is valid.
func TestAliasesSRS(t *testing.T) {
	g := startGateway(t, aliasesConfig(aliasesParams))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<carol@sender.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<sales@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"Subject: forwarded"}, "hi"))
	m := onlyMessage(t, g)
	wantStrings(t, "recipients", recipients(m), []string{"dave@partner.test", "alice@example.test"})
	srs := m.Envelope.Sender.String()
	sub := srsPattern.FindStringSubmatch(srs)
	if sub == nil {
		t.Fatalf("sender = %q, want an SRS0 address in example.test", srs)
	}
	// The hash is the one the script documents.
	if want := srsHash("s3cret", sub[2], "sender.test", "carol"); sub[1] != want {
		t.Errorf("SRS hash %s, want %s", sub[1], want)
	}
	if want := srsDay(time.Now()); sub[2] != want {
		t.Errorf("SRS timestamp %s, want %s", sub[2], want)
	}

	// A bounce to the SRS address goes back to carol, in any case.
	old := srsAddress("s3cret", srsDay(time.Now().Add(-30*24*time.Hour)), "sender.test", "carol", "example.test")
	tampered := strings.Replace(srs, "=carol@", "=mallory@", 1)
	c.Run(`
		C: MAIL FROM:<>
		S: 250 2.1.0 Ok
		C: RCPT TO:<` + tampered + `>
		S: 550 5.1.1 Invalid SRS address
		C: RCPT TO:<` + old + `>
		S: 550 5.1.1 Invalid SRS address
		C: RCPT TO:<` + strings.ToLower(srs) + `>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"Subject: bounce"}, "failed"))
	msgs := g.Queued(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	wantStrings(t, "bounce recipients", recipients(msgs[1]), []string{"carol@sender.test"})
	if s := msgs[1].Envelope.Sender.String(); s != "" {
		t.Errorf("bounce sender = %q, want <>", s)
	}
}

// No SRS when nothing leaves the local domains, when the sender is local or
// null, or when srs_domain is not set.
func TestAliasesNoSRS(t *testing.T) {
	tests := []struct {
		name   string
		params string
		sender string
		rcpt   string
	}{
		{"local targets only", aliasesParams, "carol@sender.test", "info@example.test"},
		{"local sender", aliasesParams, "bob@example.test", "sales@example.test"},
		{"null sender", aliasesParams, "", "sales@example.test"},
		{"no srs_domain", `{ aliases = { "sales@example.test" = ["dave@partner.test"] } }`, "carol@sender.test", "sales@example.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, aliasesConfig(tt.params))
			c := open(t, g, "")
			c.Run(`
				C: MAIL FROM:<` + tt.sender + `>
				S: 250 2.1.0 Ok
				C: RCPT TO:<` + tt.rcpt + `>
				S: 250 2.1.5 Ok
			` + sendMessage(nil, "hi"))
			if got := onlyMessage(t, g).Envelope.Sender.String(); got != tt.sender {
				t.Errorf("sender = %q, want %q", got, tt.sender)
			}
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
