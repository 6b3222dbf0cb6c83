package scripts

import (
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// relayConfig is a config with relay.lua alone in the pipeline, params
// given as HCL.
func relayConfig(params string) string {
	return testConfig(`
pipeline = ["lua.relay"]
lua "relay" {
  path    = "{{scripts}}/relay.lua"
  timeout = "1s"
  params  = ` + params + `
}
`)
}

// open dials the gateway, reads the greeting, says EHLO and, when user is
// not empty, authenticates as user.
func open(t *testing.T, g *gateway, user string) *smtptest.Conn {
	t.Helper()
	c := smtptest.Dial(t, g.Addr)
	c.Run("S: 220 mx.example.test ESMTP ready\nC: EHLO client.test")
	for {
		line, err := c.ReadLine()
		if err != nil {
			t.Fatalf("EHLO: %v", err)
		}
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	if user != "" {
		c.Run("C: " + authPlain(user) + "\nS: 235 2.7.0 Authentication successful")
	}
	return c
}

// The security invariant: only the script's explicit accept widens
// relaying; a client outside allow_networks meets the built-in rule.
func TestRelayAllowNetworks(t *testing.T) {
	tests := []struct {
		name     string
		networks string
		external string // the reply to RCPT TO an outside domain
	}{
		{"client in the list", `["10.0.0.0/8", "127.0.0.0/8"]`, "250 2.1.5 Ok"},
		{"client not in the list", `["10.0.0.0/8"]`, "550 5.7.1 Relay access denied"},
		{"empty list", `[]`, "550 5.7.1 Relay access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, relayConfig(`{ allow_networks = `+tt.networks+` }`))
			c := open(t, g, "")
			c.Run(`
				C: MAIL FROM:<carol@elsewhere.test>
				S: 250 2.1.0 Ok
				C: RCPT TO:<dave@outside.test>
				S: ` + tt.external + `
				C: RCPT TO:<alice@example.test>
				S: 250 2.1.5 Ok
				C: QUIT
				S: 221 2.0.0 Bye
			`)
		})
	}
}

func TestRelaySenderDomains(t *testing.T) {
	tests := []struct {
		name     string
		networks string
		sender   string
		want     string
	}{
		{"listed domain from a sender network", `["127.0.0.1/32"]`, "news@example.org", "250 2.1.5 Ok"},
		{"listed domain, other case", `["127.0.0.1/32"]`, "news@EXAMPLE.org", "250 2.1.5 Ok"},
		{"other domain from a sender network", `["127.0.0.1/32"]`, "news@other.test", "550 5.7.1 Relay access denied"},
		{"null sender from a sender network", `["127.0.0.1/32"]`, "", "550 5.7.1 Relay access denied"},
		{"listed domain from elsewhere", `["192.0.2.0/24"]`, "news@example.org", "550 5.7.1 Relay access denied"},
		{"no sender networks", `[]`, "news@example.org", "550 5.7.1 Relay access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, relayConfig(`{
				allow_sender_domains = ["example.org"]
				sender_networks      = `+tt.networks+`
			}`))
			c := open(t, g, "")
			c.Run(`
				C: MAIL FROM:<` + tt.sender + `>
				S: 250 2.1.0 Ok
				C: RCPT TO:<dave@outside.test>
				S: ` + tt.want + `
			`)
		})
	}
}

func TestRelayUserDomains(t *testing.T) {
	const owned = "250 2.1.0 Ok"
	const notOwned = "553 5.7.1 Sender address not owned by user"
	tests := []struct {
		name   string
		params string
		user   string // "" = not authenticated
		sender string
		want   string
	}{
		{"own domain", `{ alice = ["example.test"] }`, "alice", "alice@example.test", owned},
		{"own domain, other case", `{ alice = ["Example.Test"] }`, "alice", "alice@EXAMPLE.test", owned},
		{"someone else's domain", `{ alice = ["example.test"] }`, "alice", "alice@example.org", notOwned},
		{"null sender", `{ alice = ["example.test"] }`, "alice", "", notOwned},
		{"user without an entry", `{ alice = ["example.test"] }`, "bob", "bob@example.test", notOwned},
		{"user under the * entry", `{ alice = ["example.test"], "*" = ["example.org"] }`, "bob", "bob@example.org", owned},
		{"* entry does not widen alice", `{ alice = ["example.test"], "*" = ["example.org"] }`, "alice", "alice@example.org", notOwned},
		{"unauthenticated clients are not checked", `{ alice = ["example.test"] }`, "", "alice@example.org", owned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, relayConfig(`{ user_domains = `+tt.params+` }`))
			c := open(t, g, tt.user)
			c.Run(`
				C: MAIL FROM:<` + tt.sender + `>
				S: ` + tt.want + `
			`)
		})
	}
}

// An authenticated user who passes the sender check relays through the
// built-in rule (relay.authenticated), and the message is queued.
func TestRelayUserDomainsMessage(t *testing.T) {
	g := startGateway(t, relayConfig(`{ user_domains = { alice = ["example.test"] } }`))
	c := open(t, g, "alice")
	c.Run(`
		C: MAIL FROM:<alice@example.org>
		S: 553 5.7.1 Sender address not owned by user
		C: MAIL FROM:<alice@example.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<dave@outside.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"Subject: hi"}, "hello"))
	m := onlyMessage(t, g)
	if got := m.Envelope.Sender.String(); got != "alice@example.test" {
		t.Errorf("sender = %q", got)
	}
	wantStrings(t, "recipients", recipients(m), []string{"dave@outside.test"})
}

// The rate limit counts MAIL commands per client IP in the key-value store,
// across sessions.
func TestRelayRateLimit(t *testing.T) {
	g := startGateway(t, relayConfig(`{ rate = { limit = 2, per = 3600 } }`))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<a@example.org>
		S: 250 2.1.0 Ok
		C: RSET
		S: 250 2.0.0 Ok
		C: MAIL FROM:<a@example.org>
		S: 250 2.1.0 Ok
		C: RSET
		S: 250 2.0.0 Ok
		C: MAIL FROM:<a@example.org>
		S: 450 4.7.1 Rate limit exceeded, try later
	`)
	// Another session from the same IP shares the counter.
	c2 := open(t, g, "")
	c2.Run(`
		C: MAIL FROM:<b@example.org>
		S: 450 4.7.1 Rate limit exceeded, try later
		C: QUIT
		S: 221 2.0.0 Bye
	`)
}

// The rate counter is ephemeral state: it lives in the in-memory store and
// costs no durable commit on a message's path (TestRelayRateLimit shows it
// still counts).
func TestRelayRateLimitOffTheDisk(t *testing.T) {
	g := startGateway(t, relayConfig(`{ rate = { limit = 5, per = 3600 } }`))
	open(t, g, "").Run(`
		C: MAIL FROM:<a@example.org>
		S: 250 2.1.0 Ok
	`)
	if v, ok, _ := g.Spool().KVGet("relay/rate/127.0.0.1", time.Now()); ok {
		t.Errorf("durable relay/rate/127.0.0.1 = %q; the counter must not be written to the spool", v)
	}
}

// The window is fixed: it starts with the first MAIL and ends per seconds
// later, when the counter expires.
func TestRelayRateLimitWindow(t *testing.T) {
	g := startGateway(t, relayConfig(`{ rate = { limit = 1, per = 1 } }`))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<a@example.org>
		S: 250 2.1.0 Ok
		C: RSET
		S: 250 2.0.0 Ok
		C: MAIL FROM:<a@example.org>
		S: 450 4.7.1 Rate limit exceeded, try later
	`)
	time.Sleep(1100 * time.Millisecond)
	c.Run(`
		C: MAIL FROM:<a@example.org>
		S: 250 2.1.0 Ok
	`)
}
