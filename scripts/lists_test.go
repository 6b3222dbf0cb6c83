package scripts

import (
	"testing"
)

// What lists.lua does is in twins_test.go, the cases it shares with
// plugins/lists; here is what depends on its own params.

const listsParams = `{
    lists = {
      "team@example.test" = {
        members = ["alice@example.test", "bob@example.org"]
        name    = "Team"
      }
    }
  }`

func listsConfig(params string) string {
	return testConfig(`
pipeline = ["lua.lists"]
lua "lists" {
  path   = "{{scripts}}/lists.lua"
  params = ` + params + `
  match { stage = ["rcpt", "data", "command"] }
}
`)
}

// A list with a bounce address and an id of its own.
func TestListsBounceAndID(t *testing.T) {
	g := startGateway(t, listsConfig(`{
    lists = {
      "team@example.test" = {
        members = ["alice@example.test", "bob@example.org"]
        owner   = "bob@example.org"
        bounce  = "team-errors@example.test"
        id      = "Team.Lists.example.test"
      }
    }
  }`))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<alice@example.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<team@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"Subject: news", "List-Id: Another <another.example.test>", "Precedence: bulk"}, "hello team"))
	m := onlyMessage(t, g)
	if got := m.Envelope.Sender.String(); got != "team-errors@example.test" {
		t.Errorf("sender = %q, want the bounce address", got)
	}
	wantStrings(t, "List-Id", headerValues(m, "List-Id"), []string{"<Team.Lists.example.test>"})
	wantStrings(t, "List-Owner", headerValues(m, "List-Owner"), []string{"<mailto:bob@example.org>"})
	wantStrings(t, "Precedence", headerValues(m, "Precedence"), []string{"list"})
}

// EXPN and VRFY answer trusted clients only, and only with expn = true:
// authenticated clients and those in expn_networks. Others get the
// server's own answers.
func TestListsExpnVrfy(t *testing.T) {
	const untrusted = `
		C: EXPN team@example.test
		S: 502 5.5.1 EXPN not available
		C: VRFY team@example.test
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
	`
	const trusted = `
		C: EXPN team@example.test
		S: 250-2.1.5 <alice@example.test>
		S: 250 2.1.5 <bob@example.org>
		C: EXPN <TEAM@example.test>
		S: 250-2.1.5 <alice@example.test>
		S: 250 2.1.5 <bob@example.org>
		C: VRFY team@example.test
		S: 250 2.1.5 Team <team@example.test>
		C: VRFY <alice@example.test>
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
		C: EXPN alice@example.test
		S: 502 5.5.1 EXPN not available
	`
	tests := []struct {
		name     string
		expn     string
		networks string
		user     string
		script   string
	}{
		{"anonymous", "true", `[]`, "", untrusted},
		{"anonymous from another network", "true", `["10.0.0.0/8"]`, "", untrusted},
		{"authenticated", "true", `[]`, "bob", trusted},
		{"from expn_networks", "true", `["127.0.0.0/8"]`, "", trusted},
		{"from a single IP", "true", `["127.0.0.1"]`, "", trusted},
		{"expn off, authenticated", "false", `[]`, "bob", untrusted},
		{"expn off, from expn_networks", "false", `["127.0.0.0/8"]`, "", untrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, listsConfig(moreParams(listsParams, "expn = "+tt.expn, "expn_networks = "+tt.networks)))
			c := open(t, g, tt.user)
			c.Run(tt.script)
		})
	}
}
