package scripts

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
)

// Two features ship twice, as a Lua script here and as a plugin in
// plugins/: mailing lists (lists.lua, plugins/lists) and aliases with SRS
// (aliases.lua, plugins/aliases). TestTwins holds them to one behaviour:
// one table of transcript cases runs against a gateway with the two
// scripts and a gateway with the two plugins, both in the default order
// (aliases before lists), each configured from the one description
// below (twinLists, twinAliases), written as Lua params or as the
// plugins' files.

// twinList is a mailing list.
type twinList struct {
	addr, name, owner, posters, unsubscribe string
	members                                 []string
}

var twinLists = []twinList{
	{addr: "team@example.test", name: "Team", owner: "alice@example.test", posters: "members",
		unsubscribe: "mailto:team-leave@example.test",
		members:     []string{"alice@example.test", "bob@example.org", "dave@example.test"}},
	{addr: "open@example.test", posters: "anyone",
		members: []string{"carol@example.test", "alice@example.test"}},
	{addr: "announce@example.test", owner: "boss@example.test", posters: "moderated",
		members: []string{"alice@example.test", "bob@example.org"}},
}

// twinAliases are the aliases, in order; "@domain" is a catch-all.
var twinAliases = [][2]string{
	{"info@example.test", "alice@example.test, bob@example.test"},
	{"sales@example.test", "dave@partner.test, alice@example.test"},
	{"loop1@example.test", "loop2@example.test"},
	{"loop2@example.test", "alice@example.test, loop1@example.test"},
	{"@example.net", "info@example.test"},
}

// twinChain is the number of aliases in the chain deep1@ → deep2@ → …:
// one more than either form expands (deep2@ expands, deep1@ does not).
const twinChain = 11

// twinMailboxes are delivered as they are, whatever the catch-alls say.
var twinMailboxes = []string{"alice@example.test", "bob@example.test"}

// The settings the twins share: the same names and values in the Lua
// params and in the plugins' config blocks.
const (
	twinLocal = `["example.test", "example.net"]`
	// The tests' client (127.0.0.1) is outside expn_networks: only
	// authenticated users are trusted with EXPN and VRFY.
	twinExpn = `
    expn          = true
    expn_networks = ["10.0.0.0/8"]`
	twinAliasSettings = `
    local_domains = ` + twinLocal + `
    srs_domain    = "` + twinSRSDomain + `"
    srs_secret    = "` + twinSecret + `"` + twinExpn
)

const (
	twinSecret     = "s3cret"
	twinSRSDomain  = "example.test"
	twinSRSSender  = "carol@sender.test"
	twinSRSExpired = 30 * 24 * time.Hour
)

// twinAliasesFlat is twinAliases with the chain of aliases deep1@ …
// deep<twinChain>@.
func twinAliasesFlat() [][2]string {
	out := slices.Clone(twinAliases)
	for i := 1; i <= twinChain; i++ {
		out = append(out, [2]string{fmt.Sprintf("deep%d@example.test", i), fmt.Sprintf("deep%d@example.test", i+1)})
	}
	return out
}

// settings are the list's settings that are set, name and value, as both
// forms name them (a Lua param, a "# name: value" line of a list file).
func (l twinList) settings() [][2]string {
	var out [][2]string
	for _, kv := range [][2]string{{"name", l.name}, {"owner", l.owner}, {"posters", l.posters}, {"unsubscribe", l.unsubscribe}} {
		if kv[1] != "" {
			out = append(out, kv)
		}
	}
	return out
}

// twinLuaConfig is the gateway of the scripts.
func twinLuaConfig() string {
	var aliases, lists strings.Builder
	for _, a := range twinAliasesFlat() {
		fmt.Fprintf(&aliases, "      %q = %s\n", a[0], hclList(strings.Split(a[1], ", ")))
	}
	for _, l := range twinLists {
		fmt.Fprintf(&lists, "      %q = {\n        members = %s\n", l.addr, hclList(l.members))
		for _, kv := range l.settings() {
			fmt.Fprintf(&lists, "        %s = %q\n", kv[0], kv[1])
		}
		lists.WriteString("      }\n")
	}
	return testConfigDomains(twinLocal, `
pipeline = ["lua.aliases", "lua.lists"]
lua "aliases" {
  path   = "{{scripts}}/aliases.lua"
  params = {
    aliases = {
`+aliases.String()+`    }
    mailboxes     = `+hclList(twinMailboxes)+twinAliasSettings+`
  }
}
lua "lists" {
  path   = "{{scripts}}/lists.lua"
  params = {
    lists = {
`+lists.String()+`    }`+twinExpn+`
  }
}
`)
}

// twinPluginConfig builds the plugins and writes their files: a
// virtual(5) file for the aliases (a mailbox is an entry to itself) and a
// folder of list files.
func twinPluginConfig(t *testing.T) string {
	dir := t.TempDir()
	var virtual strings.Builder
	for _, a := range twinAliasesFlat() {
		fmt.Fprintf(&virtual, "%s %s\n", a[0], a[1])
	}
	for _, m := range twinMailboxes {
		fmt.Fprintf(&virtual, "%s %s\n", m, m)
	}
	writeFile(t, filepath.Join(dir, "virtual"), virtual.String())
	lists := filepath.Join(dir, "lists")
	if err := os.Mkdir(lists, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, l := range twinLists {
		var b strings.Builder
		for _, kv := range l.settings() {
			fmt.Fprintf(&b, "# %s: %s\n", kv[0], kv[1])
		}
		writeFile(t, filepath.Join(lists, l.addr), b.String()+strings.Join(l.members, "\n")+"\n")
	}
	return testConfigDomains(twinLocal, `
pipeline = ["plugin.aliases", "plugin.lists"]
plugin "aliases" {
  path = "`+gatewaytest.BuildPlugin(t, "../plugins/aliases")+`"
  config {
    virtual_file  = "`+filepath.Join(dir, "virtual")+`"`+twinAliasSettings+`
  }
}
plugin "lists" {
  path = "`+gatewaytest.BuildPlugin(t, "../plugins/lists")+`"
  config {
    lists_dir     = "`+lists+`"`+twinExpn+`
  }
}
`)
}

func hclList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// twinCase is one conversation and what it queues.
type twinCase struct {
	name   string
	user   string // authenticates as this user after EHLO; "" = anonymous
	script string // after EHLO (and AUTH); {{srs}}, {{srs_expired}} and {{srs_forged}} are SRS addresses of twinSRSSender
	want   []twinMessage
}

// twinMessage is a queued message: its envelope and some of its header.
type twinMessage struct {
	sender string              // "srs" = an SRS address of ours for twinSRSSender
	rcpts  []string            // in order
	fields map[string][]string // field name → every value; nil: the field is absent
}

// teamFields are the header fields of a post to team@.
var teamFields = map[string][]string{
	"List-Id":          {"Team <team.example.test>"},
	"List-Post":        {"<mailto:team@example.test>"},
	"List-Owner":       {"<mailto:alice@example.test>"},
	"List-Unsubscribe": {"<mailto:team-leave@example.test>"},
	"Precedence":       {"list"},
}

var teamPost = twinMessage{
	sender: "alice@example.test", // the owner: the bounce address
	rcpts:  []string{"alice@example.test", "bob@example.org", "dave@example.test"},
	fields: teamFields,
}

var noList = map[string][]string{"List-Id": nil, "List-Post": nil, "Precedence": nil}

func mailFrom(sender string) string {
	return "C: MAIL FROM:<" + sender + ">\nS: 250 2.1.0 Ok\n"
}

func rcptTo(rcpt, reply string) string {
	return "C: RCPT TO:<" + rcpt + ">\nS: " + reply + "\n"
}

const rcptOK = "250 2.1.5 Ok"

// twinData is a DATA command with a message of subject and extra header
// lines, and the 250 for it.
func twinData(subject string, header ...string) string {
	return sendMessage(append([]string{"From: someone@example.test", "Subject: " + subject}, header...), "hello")
}

var twinCases = []twinCase{
	// Lists: who may post, and what a post becomes.
	{name: "a member posts", script: mailFrom("bob@example.org") + rcptTo("team@example.test", rcptOK) + twinData("news"),
		want: []twinMessage{teamPost}},
	{name: "anyone posts to an open list", script: mailFrom("stranger@elsewhere.test") + rcptTo("open@example.test", rcptOK) + twinData("hi"),
		want: []twinMessage{{sender: "open-bounces@example.test", rcpts: []string{"carol@example.test", "alice@example.test"},
			fields: map[string][]string{"List-Id": {"<open.example.test>"}, "List-Post": {"<mailto:open@example.test>"},
				"List-Owner": nil, "List-Unsubscribe": nil, "Precedence": {"list"}}}}},
	{name: "a stranger may not post", script: mailFrom("stranger@elsewhere.test") +
		rcptTo("team@example.test", "550 5.7.1 Not allowed to post to this list")},
	{name: "nor the null sender", script: mailFrom("") +
		rcptTo("team@example.test", "550 5.7.1 Not allowed to post to this list")},
	{name: "the owner posts to a moderated list", script: mailFrom("BOSS@example.test") + rcptTo("announce@example.test", rcptOK) + twinData("all hands"),
		want: []twinMessage{{sender: "boss@example.test", rcpts: []string{"alice@example.test", "bob@example.org"},
			fields: map[string][]string{"List-Id": {"<announce.example.test>"}, "List-Owner": {"<mailto:boss@example.test>"}}}}},
	{name: "a member may not post to a moderated list", script: mailFrom("alice@example.test") +
		rcptTo("announce@example.test", "550 5.7.1 List is moderated")},
	{name: "a list message coming back is a loop", script: mailFrom("bob@example.org") + rcptTo("team@example.test", rcptOK) +
		"C: DATA\nS: 354 *\nC: List-Id: Team <TEAM.example.test>\nC:\nC: again\nC: .\nS: 554 5.4.6 List loop detected\n"},

	// Lists: one list a transaction, whatever handler accepts the others.
	{name: "a list after another recipient", script: mailFrom("bob@example.org") + rcptTo("carol@example.test", rcptOK) +
		rcptTo("team@example.test", "452 4.5.3 Send to the list in a separate transaction") + twinData("not a post"),
		want: []twinMessage{{sender: "bob@example.org", rcpts: []string{"carol@example.test"}, fields: noList}}},
	{name: "a list after an alias", script: mailFrom("bob@example.org") + rcptTo("info@example.test", rcptOK) +
		rcptTo("team@example.test", "452 4.5.3 Send to the list in a separate transaction")},
	{name: "a recipient after a list", script: mailFrom("bob@example.org") + rcptTo("team@example.test", rcptOK) +
		rcptTo("carol@example.test", "452 4.5.3 Send to this recipient in a separate transaction") +
		rcptTo("open@example.test", "452 4.5.3 Send to this recipient in a separate transaction") + twinData("news"),
		want: []twinMessage{teamPost}},
	// Issue 8, bug 3: the aliases hook runs first and accepts info@, so
	// the lists hook never saw it at rcpt.
	{name: "an alias after a list", script: mailFrom("bob@example.org") + rcptTo("team@example.test", rcptOK) +
		rcptTo("info@example.test", "452 4.5.3 Send to this recipient in a separate transaction") + twinData("news"),
		want: []twinMessage{teamPost}},
	{name: "the next transaction is not the list's", script: mailFrom("bob@example.org") + rcptTo("team@example.test", rcptOK) + twinData("news") +
		mailFrom("bob@example.org") + rcptTo("carol@example.test", rcptOK) + rcptTo("dave@example.test", rcptOK) + twinData("private"),
		want: []twinMessage{teamPost, {sender: "bob@example.org", rcpts: []string{"carol@example.test", "dave@example.test"}, fields: noList}}},
	{name: "nor one after RSET", script: mailFrom("bob@example.org") + rcptTo("team@example.test", rcptOK) + "C: RSET\nS: 250 2.0.0 Ok\n" +
		mailFrom("bob@example.org") + rcptTo("carol@example.test", rcptOK) + rcptTo("dave@example.test", rcptOK) + twinData("private"),
		want: []twinMessage{{sender: "bob@example.org", rcpts: []string{"carol@example.test", "dave@example.test"}, fields: noList}}},
	{name: "a list's members by hand are no post", script: mailFrom("bob@example.org") + rcptTo("carol@example.test", rcptOK) +
		rcptTo("alice@example.test", rcptOK) + rcptTo("dave@example.test", rcptOK) + twinData("by hand"),
		want: []twinMessage{{sender: "bob@example.org", rcpts: []string{"carol@example.test", "alice@example.test", "dave@example.test"}, fields: noList}}},

	// Aliases.
	{name: "an alias", script: mailFrom("bob@example.org") + rcptTo("INFO@Example.TEST", rcptOK) + twinData("order"),
		want: []twinMessage{{sender: "bob@example.org", rcpts: []string{"alice@example.test", "bob@example.test"}, fields: noList}}},
	{name: "a catch-all to an alias", script: mailFrom("bob@example.org") + rcptTo("anyone@example.net", rcptOK) + twinData("order"),
		want: []twinMessage{{sender: "bob@example.org", rcpts: []string{"alice@example.test", "bob@example.test"}}}},
	{name: "a mailbox", script: mailFrom("bob@example.org") + rcptTo("alice@example.test", rcptOK) + twinData("hi"),
		want: []twinMessage{{sender: "bob@example.org", rcpts: []string{"alice@example.test"}}}},
	{name: "refusals", script: mailFrom("bob@example.org") +
		rcptTo("loop1@example.test", "550 5.4.6 Alias loop detected") +
		rcptTo("deep1@example.test", "550 5.4.6 Alias expansion too deep") +
		rcptTo("deep2@example.test", rcptOK) +
		rcptTo("nobody@elsewhere.test", "550 5.7.1 Relay access denied")},

	// SRS: mail forwarded out of the local domains gets a sender of ours,
	// and a bounce to it finds the way back.
	{name: "forwarded out: SRS", script: mailFrom(twinSRSSender) + rcptTo("sales@example.test", rcptOK) + twinData("forwarded"),
		want: []twinMessage{{sender: "srs", rcpts: []string{"dave@partner.test", "alice@example.test"}}}},
	{name: "forwarded in: no SRS", script: mailFrom(twinSRSSender) + rcptTo("info@example.test", rcptOK) + twinData("kept"),
		want: []twinMessage{{sender: twinSRSSender, rcpts: []string{"alice@example.test", "bob@example.test"}}}},
	{name: "a local sender: no SRS", script: mailFrom("bob@example.test") + rcptTo("sales@example.test", rcptOK) + twinData("kept"),
		want: []twinMessage{{sender: "bob@example.test", rcpts: []string{"dave@partner.test", "alice@example.test"}}}},
	{name: "the null sender: no SRS", script: mailFrom("") + rcptTo("sales@example.test", rcptOK) + twinData("kept"),
		want: []twinMessage{{sender: "", rcpts: []string{"dave@partner.test", "alice@example.test"}}}},
	{name: "a bounce to an SRS address", script: mailFrom("") +
		rcptTo("{{srs_forged}}", "550 5.1.1 Invalid SRS address") +
		rcptTo("{{srs_expired}}", "550 5.1.1 Invalid SRS address") +
		rcptTo("{{srs_lower}}", rcptOK) + twinData("failed"),
		want: []twinMessage{{sender: "", rcpts: []string{twinSRSSender}}}},

	// EXPN and VRFY: trusted clients only (issue 8, bug 4: the plugins
	// answered everyone).
	{name: "EXPN and VRFY from a stranger", script: `
		C: EXPN team@example.test
		S: 502 5.5.1 EXPN not available
		C: EXPN info@example.test
		S: 502 5.5.1 EXPN not available
		C: VRFY team@example.test
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
	`},
	{name: "EXPN and VRFY from a user", user: "bob", script: `
		C: EXPN team@example.test
		S: 250-2.1.5 <alice@example.test>
		S: 250-2.1.5 <bob@example.org>
		S: 250 2.1.5 <dave@example.test>
		C: EXPN <OPEN@example.test>
		S: 250-2.1.5 <carol@example.test>
		S: 250 2.1.5 <alice@example.test>
		C: VRFY Team <team@example.test>
		S: 250 2.1.5 Team <team@example.test>
		C: VRFY open@example.test
		S: 250 2.1.5 <open@example.test>
		C: EXPN info@example.test
		S: 250-2.1.5 <alice@example.test>
		S: 250 2.1.5 <bob@example.test>
		C: EXPN anyone@example.net
		S: 250-2.1.5 <alice@example.test>
		S: 250 2.1.5 <bob@example.test>
		C: EXPN loop1@example.test
		S: 550 5.4.6 Alias loop detected
		C: VRFY alice@example.test
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
		C: EXPN alice@example.test
		S: 502 5.5.1 EXPN not available
	`},
}

func TestTwins(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts plugins")
	}
	forms := []struct {
		name string
		g    *gateway
	}{
		{"lua", startGateway(t, twinLuaConfig())},
		{"plugin", startGateway(t, twinPluginConfig(t))},
	}
	for _, tc := range twinCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range forms {
				t.Run(f.name, func(t *testing.T) { runTwinCase(t, f.g, tc) })
			}
		})
	}
}

func runTwinCase(t *testing.T, g *gateway, tc twinCase) {
	before := len(g.Queued(t))
	now := time.Now()
	c := open(t, g, tc.user)
	c.Run(strings.NewReplacer(
		"{{srs_lower}}", strings.ToLower(twinSRS(now)),
		"{{srs_expired}}", twinSRS(now.Add(-twinSRSExpired)),
		"{{srs_forged}}", strings.Replace(twinSRS(now), "=carol@", "=mallory@", 1),
	).Replace(tc.script) + "C: QUIT\nS: 221 2.0.0 Bye\n")
	got := g.Queued(t)[before:]
	if len(got) != len(tc.want) {
		t.Fatalf("%d messages queued, want %d", len(got), len(tc.want))
	}
	for i, w := range tc.want {
		m := got[i]
		sender := m.Envelope.Sender.String()
		if w.sender == "srs" {
			if sender != twinSRS(now) && sender != twinSRS(time.Now()) {
				t.Errorf("message %d: sender %q, want %q", i, sender, twinSRS(now))
			}
		} else if sender != w.sender {
			t.Errorf("message %d: sender %q, want %q", i, sender, w.sender)
		}
		wantStrings(t, fmt.Sprintf("message %d: recipients", i), recipients(m), w.rcpts)
		for name, want := range w.fields {
			wantStrings(t, fmt.Sprintf("message %d: %s", i, name), headerValues(m, name), want)
		}
	}
}

// twinSRS is the SRS address of twinSRSSender made at t, as both forms
// must make it: the algorithm aliases.lua documents, written again in Go
// (srsAddress in aliases_test.go).
func twinSRS(t time.Time) string {
	local, domain, _ := strings.Cut(twinSRSSender, "@")
	return srsAddress(twinSecret, srsDay(t), domain, local, twinSRSDomain)
}
