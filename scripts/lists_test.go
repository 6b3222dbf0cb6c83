package scripts

import (
	"testing"
)

const listsParams = `{
    lists = {
      "team@example.test" = {
        members     = ["alice@example.test", "bob@example.org"]
        bounce      = "team-bounces@example.test"
        id          = "team.example.test"
        name        = "Team list"
        unsubscribe = "mailto:team-leave@example.test"
        posters     = "members"
      }
      "open@example.test" = {
        members = ["carol@example.test", "alice@example.test"]
        posters = "anyone"
      }
    }
    users = ["alice@example.test"]
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

func TestListsPost(t *testing.T) {
	g := startGateway(t, listsConfig(listsParams))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<Alice@Example.Test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<team@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"From: Alice <alice@example.test>", "To: team@example.test", "Subject: news"}, "hello team"))
	m := onlyMessage(t, g)
	wantStrings(t, "recipients", recipients(m), []string{"alice@example.test", "bob@example.org"})
	if got := m.Envelope.Sender.String(); got != "team-bounces@example.test" {
		t.Errorf("sender = %q, want the bounce address", got)
	}
	wantStrings(t, "List-Id", headerValues(m, "List-Id"), []string{"Team list <team.example.test>"})
	wantStrings(t, "List-Post", headerValues(m, "List-Post"), []string{"<mailto:team@example.test>"})
	wantStrings(t, "List-Unsubscribe", headerValues(m, "List-Unsubscribe"), []string{"<mailto:team-leave@example.test>"})
	wantStrings(t, "Subject", headerValues(m, "Subject"), []string{"news"})
}

// A list open to anyone, without bounce or id: the sender stays, the
// List-Id is made from the address.
func TestListsOpenList(t *testing.T) {
	g := startGateway(t, listsConfig(listsParams))
	c := open(t, g, "")
	c.Run(`
		C: MAIL FROM:<stranger@elsewhere.test>
		S: 250 2.1.0 Ok
		C: RCPT TO:<open@example.test>
		S: 250 2.1.5 Ok
	` + sendMessage([]string{"Subject: hi"}, "hello"))
	m := onlyMessage(t, g)
	wantStrings(t, "recipients", recipients(m), []string{"carol@example.test", "alice@example.test"})
	if got := m.Envelope.Sender.String(); got != "stranger@elsewhere.test" {
		t.Errorf("sender = %q", got)
	}
	wantStrings(t, "List-Id", headerValues(m, "List-Id"), []string{"<open.example.test>"})
	wantStrings(t, "List-Unsubscribe", headerValues(m, "List-Unsubscribe"), nil)
}

func TestListsRefused(t *testing.T) {
	tests := []struct {
		name   string
		script string
	}{
		{"not a member", `
			C: MAIL FROM:<stranger@elsewhere.test>
			S: 250 2.1.0 Ok
			C: RCPT TO:<team@example.test>
			S: 550 5.7.1 Not allowed to post
		`},
		{"null sender", `
			C: MAIL FROM:<>
			S: 250 2.1.0 Ok
			C: RCPT TO:<team@example.test>
			S: 550 5.7.1 Not allowed to post
		`},
		{"list after another recipient", `
			C: MAIL FROM:<alice@example.test>
			S: 250 2.1.0 Ok
			C: RCPT TO:<carol@example.test>
			S: 250 2.1.5 Ok
			C: RCPT TO:<team@example.test>
			S: 452 4.5.3 Too many recipients, send the rest separately
		`},
		{"recipient after a list", `
			C: MAIL FROM:<alice@example.test>
			S: 250 2.1.0 Ok
			C: RCPT TO:<team@example.test>
			S: 250 2.1.5 Ok
			C: RCPT TO:<carol@example.test>
			S: 452 4.5.3 Too many recipients, send the rest separately
			C: RCPT TO:<open@example.test>
			S: 452 4.5.3 Too many recipients, send the rest separately
		`},
		{"the list's own List-Id: a loop", `
			C: MAIL FROM:<alice@example.test>
			S: 250 2.1.0 Ok
			C: RCPT TO:<team@example.test>
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 *
			C: List-Id: Team list <team.example.test>
			C: Subject: again
			C:
			C: hi
			C: .
			S: 554 5.4.6 Mail loop detected
		`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, listsConfig(listsParams))
			c := open(t, g, "")
			c.Run(tt.script)
			if n := len(g.Queued(t)); n != 0 {
				t.Errorf("%d messages queued", n)
			}
		})
	}
}

// EXPN and VRFY answer trusted clients only: authenticated ones and those
// in expn_networks. Others get the server's own answers.
func TestListsExpnVrfy(t *testing.T) {
	const untrusted = `
		C: EXPN team@example.test
		S: 502 5.5.1 EXPN not available
		C: VRFY alice@example.test
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
		S: 250 2.1.5 <team@example.test>
		C: VRFY <alice@example.test>
		S: 250 2.1.5 <alice@example.test>
		C: VRFY dave@example.test
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
		C: EXPN alice@example.test
		S: 502 5.5.1 EXPN not available
	`
	tests := []struct {
		name     string
		networks string
		user     string
		script   string
	}{
		{"anonymous", `[]`, "", untrusted},
		{"anonymous from another network", `["10.0.0.0/8"]`, "", untrusted},
		{"authenticated", `[]`, "bob", trusted},
		{"from expn_networks", `["127.0.0.0/8"]`, "", trusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := listsParams[:len(listsParams)-1] + "  expn_networks = " + tt.networks + "\n}"
			g := startGateway(t, listsConfig(params))
			c := open(t, g, tt.user)
			c.Run(tt.script)
		})
	}
}
