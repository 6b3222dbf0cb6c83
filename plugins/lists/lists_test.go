package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// logHost is an sdk.Host that records its log.
type logHost struct {
	sdk.Host // nil: no other service is used
	mu       sync.Mutex
	logs     []string
}

func (h *logHost) Log(_ context.Context, level, msg string, fields map[string]string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	line := level + " " + msg
	if e, ok := fields["err"]; ok {
		line += ": " + e
	}
	h.logs = append(h.logs, line)
	return nil
}

// noted returns r with the note the rcpt hook writes for list, as the host
// hands it back at the later stages of the transaction.
func noted(r *sdk.Request, list string) *sdk.Request {
	if list != "" {
		r.Notes = map[string]string{"plugin.lists/list": list}
	}
	return r
}

func testdataConfig() map[string]any {
	return map[string]any{
		"lists_dir":     filepath.Join("testdata", "lists"),
		"lists":         map[string]string{"ops@example.test": "eve@example.org, frank,,"},
		"domain":        "example.test",
		"expn":          true,
		"expn_networks": []string{"10.0.0.0/8"},
	}
}

func configured(t *testing.T, m map[string]any, host sdk.Host) *Lists {
	t.Helper()
	p := New()
	if err := p.Configure(context.Background(), m, host); err != nil {
		t.Fatalf("Configure(%v) = %v", m, err)
	}
	return p
}

func TestLoadTestdata(t *testing.T) {
	c, err := parseConfig(testdataConfig())
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := load(c)
	if err != nil {
		t.Fatal(err)
	}
	members := func(m ...string) ([]string, map[string]bool) {
		set := map[string]bool{}
		for _, a := range m {
			set[strings.ToLower(a)] = true
		}
		return m, set
	}
	mk := func(l list, m ...string) *list {
		l.members, l.isMember = members(m...)
		return &l
	}
	want := map[string]*list{
		"team@example.test": mk(list{
			addr: "team@example.test", name: "Team", id: "team.example.test", owner: "alice@example.test",
			posters: "members", unsubscribe: "mailto:team-request@example.test?subject=unsubscribe",
			bounce: "alice@example.test", source: "testdata/lists/team@example.test",
		}, "alice@example.test", "bob@example.org", "dave@example.test"),
		"announce@example.test": mk(list{
			addr: "announce@example.test", id: "announce.list.example.test", owner: "boss@example.test",
			posters: "moderated", bounce: "announce-owner@example.test", source: "testdata/lists/announce.list",
		}, "alice@example.test", "bob@example.org"),
		"open@example.test": mk(list{
			addr: "open@example.test", id: "open.example.test", posters: "anyone",
			bounce: "open-bounces@example.test", source: "testdata/lists/open.list",
		}, "carol@example.net"),
		"ops@example.test": mk(list{
			addr: "ops@example.test", id: "ops.example.test", posters: "members",
			bounce: "ops-bounces@example.test", source: "lists",
		}, "eve@example.org", "frank@example.test"),
	}
	if diff := cmp.Diff(want, s.byAddr, cmp.AllowUnexported(list{})); diff != "" {
		t.Errorf("lists (-want +got):\n%s", diff)
	}
	var files []string
	for _, st := range s.files {
		files = append(files, st.path)
	}
	wantFiles := []string{"testdata/lists", "testdata/lists/announce.list", "testdata/lists/open.list", "testdata/lists/team@example.test"}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name   string
		files  map[string]string
		inline map[string]string
		domain string
		policy string
		field  string
		want   string // DIR is the folder
	}{
		{"two members on a line", map[string]string{"a@example.test": "x@example.test y@example.test\n"}, nil, "", "", "lists_dir",
			`lists: DIR/a@example.test:1: want one member a line, got "x@example.test y@example.test": syntax error`},
		{"bad posters", map[string]string{"a@example.test": "# posters: everyone\nx@example.test\n"}, nil, "", "", "lists_dir",
			`lists: DIR/a@example.test:1: # posters: want one of members, anyone, moderated, got "everyone": syntax error`},
		{"header twice", map[string]string{"a@example.test": "# owner: x@example.test\n# Owner: y@example.test\n"}, nil, "", "", "lists_dir",
			"lists: DIR/a@example.test:2: # owner: given twice (first at line 1): syntax error"},
		{"address differs from name", map[string]string{"a@example.test": "# address: b@example.test\n"}, nil, "", "", "lists_dir",
			"lists: DIR/a@example.test:1: # address: b@example.test differs from the file name: syntax error"},
		{".list without address or domain", map[string]string{"a.list": "x@example.test\n"}, nil, "", "", "lists_dir",
			"lists: DIR/a.list: no # address: line and no domain setting for a.list"},
		{"member without domain", map[string]string{"a@example.test": "\n\nbob\n"}, nil, "", "", "lists_dir",
			`lists: DIR/a@example.test:3: "bob" has no domain and the domain setting is empty: syntax error`},
		{"bad owner", map[string]string{"a@example.test": "# owner: x@\n"}, nil, "", "", "lists_dir",
			`lists: DIR/a@example.test:1: # owner: "x@" is not an address: syntax error`},
		{"moderated without owner", map[string]string{"a@example.test": "# posters: moderated\nx@example.test\n"}, nil, "", "", "lists_dir",
			"lists: DIR/a@example.test: list a@example.test is moderated but has no owner"},
		{"inline moderated by default", nil, map[string]string{"a@example.test": "x@example.test"}, "", "moderated", "lists",
			"lists: lists: list a@example.test is moderated but has no owner"},
		{"defined twice", map[string]string{"a@example.test": "x@example.test\n", "a.list": "y@example.test\n"},
			nil, "example.test", "", "lists_dir",
			"lists: DIR/a@example.test: list a@example.test is already defined in DIR/a.list"},
		{"file and inline", map[string]string{"a@example.test": "x@example.test\n"}, map[string]string{"A@Example.test": "y@example.test"}, "", "", "lists",
			"lists: lists: list A@example.test is already defined in DIR/a@example.test"},
		{"inline bad member", nil, map[string]string{"a@example.test": "x@example.test, y z@example.test"}, "", "", "lists",
			`lists: lists["a@example.test"]: "y z@example.test" is not an address`},
		{"inline bad address", nil, map[string]string{"a@": "x@example.test"}, "", "", "lists",
			`lists: lists: list address: "a@" is not an address`},
		{"id with brackets", map[string]string{"a@example.test": "# id: <a.example.test>\n"}, nil, "", "", "lists_dir",
			"lists: DIR/a@example.test: # name:, # id: and # unsubscribe: must not hold < or >"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := config{dir: dir, inline: tt.inline, domain: tt.domain, policy: PostersMembers}
			if tt.policy != "" {
				c.policy = tt.policy
			}
			_, field, err := load(c)
			if err == nil {
				t.Fatalf("load = nil error, want %s", tt.want)
			}
			if got := strings.ReplaceAll(err.Error(), dir, "DIR"); got != tt.want || field != tt.field {
				t.Errorf("load error\n got %s: %s\nwant %s: %s", field, got, tt.field, tt.want)
			}
		})
	}
}

func req(stage sdk.Stage, sender string, rcpts ...string) *sdk.Request {
	r := &sdk.Request{
		Stage:   stage,
		Session: &sdk.Session{ID: "sess1", ClientIP: "192.0.2.1"},
		Txn:     &sdk.Txn{Sender: address.Split(sender)},
	}
	if sender == "" {
		r.Txn.Sender = sdk.Address{}
	}
	for _, a := range rcpts {
		r.Txn.Recipients = append(r.Txn.Recipients, sdk.Recipient{Address: address.Split(a)})
	}
	return r
}

func rcptReq(sender, rcpt string, before ...string) *sdk.Request {
	r := req(sdk.StageRcpt, sender, before...)
	r.Rcpt = &sdk.Recipient{Address: address.Split(rcpt)}
	return r
}

func addrs(s ...string) []sdk.Address {
	var out []sdk.Address
	for _, a := range s {
		out = append(out, address.Split(a))
	}
	return out
}

func TestRcpt(t *testing.T) {
	teamMembers := addrs("alice@example.test", "bob@example.org", "dave@example.test")
	tests := []struct {
		name     string
		r        *sdk.Request
		note     string // the list of the transaction's note
		want     sdk.Decision
		wantRcpt []sdk.Address
		wantNote string // the note written
	}{
		{"member posts", rcptReq("bob@example.org", "team@example.test"), "",
			sdk.AcceptDecision().WithReason("lists: team@example.test expands to 3 members"), teamMembers, "team@example.test"},
		{"member, other case", rcptReq("BOB@EXAMPLE.ORG", "Team@Example.Test"), "",
			sdk.AcceptDecision().WithReason("lists: team@example.test expands to 3 members"), teamMembers, "team@example.test"},
		{"non-member", rcptReq("mallory@example.net", "team@example.test"), "",
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "Not allowed to post to this list").
				WithReason("lists: <mallory@example.net> is not a member of team@example.test"), nil, ""},
		{"null sender", rcptReq("", "team@example.test"), "",
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "Not allowed to post to this list").
				WithReason("lists: <> is not a member of team@example.test"), nil, ""},
		{"moderated, owner", rcptReq("boss@example.test", "announce@example.test"), "",
			sdk.AcceptDecision().WithReason("lists: announce@example.test expands to 2 members"),
			addrs("alice@example.test", "bob@example.org"), "announce@example.test"},
		{"moderated, member", rcptReq("alice@example.test", "announce@example.test"), "",
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "List is moderated").
				WithReason("lists: <alice@example.test> is not the owner of moderated list announce@example.test"), nil, ""},
		{"anyone", rcptReq("stranger@example.net", "open@example.test"), "",
			sdk.AcceptDecision().WithReason("lists: open@example.test expands to 1 members"),
			addrs("carol@example.net"), "open@example.test"},
		{"inline list", rcptReq("eve@example.org", "ops@example.test"), "",
			sdk.AcceptDecision().WithReason("lists: ops@example.test expands to 2 members"),
			addrs("eve@example.org", "frank@example.test"), "ops@example.test"},
		{"list after other recipients", rcptReq("bob@example.org", "team@example.test", "x@example.test"), "",
			sdk.DeferDecision(452, sdk.EnhancedCode{4, 5, 3}, "Send to the list in a separate transaction").
				WithReason("lists: list team@example.test after other recipients"), nil, ""},
		{"other recipient after a list", rcptReq("bob@example.org", "x@example.test", "alice@example.test", "bob@example.org", "dave@example.test"), "team@example.test",
			sdk.DeferDecision(452, sdk.EnhancedCode{4, 5, 3}, "Send to this recipient in a separate transaction").
				WithReason("lists: x@example.test after list team@example.test"), nil, ""},
		{"not a list", rcptReq("bob@example.org", "x@example.test", "y@example.test"), "",
			sdk.ContinueDecision(), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configured(t, testdataConfig(), nil)
			got, eff, err := p.Rcpt(context.Background(), noted(tt.r, tt.note))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRcpt, eff.Recipients); diff != "" {
				t.Errorf("recipients (-want +got):\n%s", diff)
			}
			if eff.Notes[noteList] != tt.wantNote || len(eff.Notes) > 1 {
				t.Errorf("notes = %q, want %s = %q", eff.Notes, noteList, tt.wantNote)
			}
			if err := got.Validate(sdk.StageRcpt); err != nil {
				t.Errorf("decision does not validate: %v", err)
			}
		})
	}
}

func TestRcptEmptyListDrops(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "empty@example.test"), []byte("# posters: anyone\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := configured(t, map[string]any{"lists_dir": dir}, nil)
	got, eff, err := p.Rcpt(context.Background(), rcptReq("a@example.test", "empty@example.test"))
	want := sdk.DropDecision().WithReason("lists: list empty@example.test has no members")
	if err != nil || got != want || !eff.IsZero() {
		t.Errorf("Rcpt = %+v, %+v, %v; want %+v", got, eff, err, want)
	}
}

func dataReq(sender string, header []sdk.HeaderField, rcpts ...string) *sdk.Request {
	r := req(sdk.StageData, sender, rcpts...)
	r.Message = &sdk.Message{Header: header, Body: []byte("hi\r\n")}
	return r
}

func TestData(t *testing.T) {
	team := []string{"alice@example.test", "bob@example.org", "dave@example.test"}
	teamEffects := sdk.Effects{
		RemoveHeaders: removedFields,
		AddHeaders: []sdk.HeaderField{
			{Name: "List-Id", Value: "Team <team.example.test>"},
			{Name: "List-Post", Value: "<mailto:team@example.test>"},
			{Name: "List-Owner", Value: "<mailto:alice@example.test>"},
			{Name: "List-Unsubscribe", Value: "<mailto:team-request@example.test?subject=unsubscribe>"},
			{Name: "Precedence", Value: "list"},
		},
		Sender: &sdk.Address{Local: "alice", Domain: "example.test"},
	}
	opsEffects := sdk.Effects{
		RemoveHeaders: removedFields,
		AddHeaders: []sdk.HeaderField{
			{Name: "List-Id", Value: "<ops.example.test>"},
			{Name: "List-Post", Value: "<mailto:ops@example.test>"},
			{Name: "Precedence", Value: "list"},
		},
		Sender: &sdk.Address{Local: "ops-bounces", Domain: "example.test"},
	}
	tests := []struct {
		name    string
		note    string
		r       *sdk.Request
		want    sdk.Decision
		wantEff sdk.Effects
	}{
		{"list transaction", "team@example.test", dataReq("bob@example.org", nil, team...),
			sdk.ContinueDecision().WithReason("lists: message to list team@example.test"), teamEffects},
		{"inline list, no owner", "ops@example.test", dataReq("eve@example.org", nil, "eve@example.org", "frank@example.test"),
			sdk.ContinueDecision().WithReason("lists: message to list ops@example.test"), opsEffects},
		{"no note: the members by hand", "", dataReq("bob@example.org", nil, team...), sdk.ContinueDecision(), sdk.Effects{}},
		{"the members and more", "team@example.test", dataReq("bob@example.org", nil, append(team, "carol@example.test")...),
			sdk.ContinueDecision(), sdk.Effects{}},
		{"not all the members", "team@example.test", dataReq("bob@example.org", nil, "alice@example.test"),
			sdk.ContinueDecision(), sdk.Effects{}},
		{"loop", "team@example.test",
			dataReq("bob@example.org", []sdk.HeaderField{{Name: "list-id", Value: "Team <TEAM.example.test>"}}, team...),
			sdk.RejectDecision(554, sdk.EnhancedCode{5, 4, 6}, "List loop detected").
				WithReason("lists: the message already has List-Id <team.example.test>"), sdk.Effects{}},
		{"other list's List-Id", "team@example.test",
			dataReq("bob@example.org", []sdk.HeaderField{{Name: "List-Id", Value: "<other.example.net>"}}, team...),
			sdk.ContinueDecision().WithReason("lists: message to list team@example.test"), teamEffects},
		{"recipients in another case", "team@example.test", dataReq("bob@example.org", nil, "DAVE@example.test", "bob@example.org", "alice@example.test"),
			sdk.ContinueDecision().WithReason("lists: message to list team@example.test"), teamEffects},
		{"an unknown list", "gone@example.test", dataReq("bob@example.org", nil, team...), sdk.ContinueDecision(), sdk.Effects{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configured(t, testdataConfig(), nil)
			got, eff, err := p.Data(context.Background(), noted(tt.r, tt.note))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantEff, eff, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
			if err := got.Validate(sdk.StageData); err != nil {
				t.Errorf("decision does not validate: %v", err)
			}
		})
	}
}

func TestCommand(t *testing.T) {
	on := configured(t, testdataConfig(), nil)
	offCfg := testdataConfig()
	delete(offCfg, "expn")
	off := configured(t, offCfg, nil)
	user := &sdk.Session{ID: "s", ClientIP: "192.0.2.9", AuthUser: "bob"}
	stranger := &sdk.Session{ID: "s", ClientIP: "192.0.2.9"}
	inside := &sdk.Session{ID: "s", ClientIP: "10.1.2.3"}
	cmd := func(s *sdk.Session, verb, arg string) *sdk.Request {
		return &sdk.Request{Stage: sdk.StageCommand, Session: s, Command: verb, Arg: arg}
	}
	team := []string{"<alice@example.test>", "<bob@example.org>", "<dave@example.test>"}
	tests := []struct {
		name  string
		p     *Lists
		r     *sdk.Request
		want  sdk.Verdict
		lines []string
	}{
		{"EXPN list", on, cmd(user, "EXPN", "team@example.test"), sdk.Accept, team},
		{"EXPN from expn_networks", on, cmd(inside, "EXPN", "team@example.test"), sdk.Accept, team},
		{"EXPN from a stranger", on, cmd(stranger, "EXPN", "team@example.test"), sdk.Continue, nil},
		{"EXPN bare name", on, cmd(user, "expn", "<ops>"), sdk.Accept, []string{"<eve@example.org>", "<frank@example.test>"}},
		{"EXPN off", off, cmd(user, "EXPN", "team@example.test"), sdk.Continue, nil},
		{"EXPN unknown", on, cmd(user, "EXPN", "nobody@example.test"), sdk.Continue, nil},
		{"VRFY list", on, cmd(user, "VRFY", "team"), sdk.Accept, []string{"Team <team@example.test>"}},
		{"VRFY list without name", on, cmd(inside, "VRFY", "<open@example.test>"), sdk.Accept, []string{"<open@example.test>"}},
		{"VRFY from a stranger", on, cmd(stranger, "VRFY", "team"), sdk.Continue, nil},
		{"VRFY off", off, cmd(user, "VRFY", "team"), sdk.Continue, nil},
		{"VRFY member", on, cmd(user, "VRFY", "alice@example.test"), sdk.Continue, nil},
		{"other verb", on, cmd(user, "NOOP", ""), sdk.Continue, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, eff, err := tt.p.Command(context.Background(), tt.r)
			if err != nil {
				t.Fatal(err)
			}
			if got.Verdict != tt.want {
				t.Errorf("verdict = %s, want %s", got.Verdict, tt.want)
			}
			if diff := cmp.Diff(tt.lines, eff.ReplyLines); diff != "" {
				t.Errorf("reply lines (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCommandRcpt: in a list's transaction, RCPT gets 452 at the command
// stage already, before a hook earlier in the pipeline (aliases) can
// accept the recipient at rcpt.
func TestCommandRcpt(t *testing.T) {
	team := []string{"alice@example.test", "bob@example.org", "dave@example.test"}
	rcptCmd := func(before ...string) *sdk.Request {
		r := req(sdk.StageCommand, "bob@example.org", before...)
		r.Command, r.Arg = "RCPT", "TO:<info@example.test> NOTIFY=NEVER"
		return r
	}
	tests := []struct {
		name string
		note string
		r    *sdk.Request
		want sdk.Decision
	}{
		{"after a list", "team@example.test", rcptCmd(team...),
			sdk.DeferDecision(452, sdk.EnhancedCode{4, 5, 3}, "Send to this recipient in a separate transaction").
				WithReason("lists: RCPT TO:<info@example.test> NOTIFY=NEVER after list team@example.test")},
		{"first recipient", "team@example.test", rcptCmd(), sdk.ContinueDecision()},
		{"not the members", "team@example.test", rcptCmd("carol@example.test"), sdk.ContinueDecision()},
		{"no note", "", rcptCmd(team...), sdk.ContinueDecision()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configured(t, testdataConfig(), nil)
			got, _, err := p.Command(context.Background(), noted(tt.r, tt.note))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if err := got.Validate(sdk.StageCommand); err != nil {
				t.Errorf("decision does not validate: %v", err)
			}
		})
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mtime time.Time) {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mtime := time.Now().Add(-time.Hour)
	write("a@example.test", "# posters: anyone\nx@example.test\n", mtime)
	host := &logHost{}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := New()
	p.now = func() time.Time { return clock }
	if err := p.Configure(context.Background(), map[string]any{"lists_dir": dir, "reload_interval": "30s"}, host); err != nil {
		t.Fatal(err)
	}
	members := func(step, list string, want ...string) {
		t.Helper()
		_, eff, err := p.Rcpt(context.Background(), rcptReq("s@example.net", list))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range eff.Recipients {
			got = append(got, a.String())
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: members of %s (-want +got):\n%s", step, list, diff)
		}
	}
	members("first read", "a@example.test", "x@example.test")

	write("a@example.test", "# posters: anyone\nx@example.test\ny@example.test\n", mtime.Add(time.Second))
	write("b@example.test", "# posters: anyone\nz@example.test\n", mtime)
	clock = clock.Add(29 * time.Second)
	members("before the interval", "a@example.test", "x@example.test")
	members("new list, before the interval", "b@example.test")
	clock = clock.Add(time.Second)
	members("after the interval", "a@example.test", "x@example.test", "y@example.test")
	members("new list, after the interval", "b@example.test", "z@example.test")

	write("a@example.test", "# posters: nobody\n", mtime.Add(2*time.Second))
	clock = clock.Add(time.Minute)
	members("broken file", "a@example.test", "x@example.test", "y@example.test")
	want := []string{
		"info lists: lists reloaded",
		"error lists: reload failed, keeping the lists read before: lists: " + dir +
			`/a@example.test:1: # posters: want one of members, anyone, moderated, got "nobody": syntax error`,
	}
	if diff := cmp.Diff(want, host.logs); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]any
		want []string
	}{
		{"nothing", map[string]any{}, []string{"config: lists_dir: set lists_dir, lists or both"}},
		{"bad policy", map[string]any{"lists": map[string]string{"a@b.test": "c@b.test"}, "policy_default": "open"},
			[]string{`config: policy_default: want one of members, anyone, moderated, got "open"`}},
		{"lists not a map", map[string]any{"lists": []string{"a@b.test"}},
			[]string{"config: lists: want map(string), got list"}},
		{"unknown", map[string]any{"lists_dir": "testdata/lists", "list_dir": "x"},
			[]string{"config: list_dir: unknown setting"}},
		{"bad domain and interval", map[string]any{"lists_dir": "testdata/lists", "domain": "-", "reload_interval": "1 minute"},
			[]string{`config: reload_interval: want a duration such as "10s" or "0s", got "1 minute"`}},
		{"missing folder", map[string]any{"lists_dir": "testdata/nonesuch"},
			[]string{"config: lists_dir: lists: stat testdata/nonesuch: no such file or directory"}},
		{"folder is a file", map[string]any{"lists_dir": "testdata/lists/open.list"},
			[]string{"config: lists_dir: lists: testdata/lists/open.list is not a folder"}},
		{"list file needs the domain", map[string]any{"lists_dir": "testdata/lists"},
			[]string{"config: lists_dir: lists: testdata/lists/open.list: no # address: line and no domain setting for open.list"}},
	}
	// Through the plugin boundary, as the host configures: the sdk refuses
	// unknown settings, wrong types and missing required settings (sorted
	// by field) before parseConfig runs; the rest are the plugin's checks.
	r := sdktest.Start(t, New())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Configure(t.Context(), tt.cfg, nil)
			var errs sdk.ConfigErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Configure = %v, want sdk.ConfigErrors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSchemaGolden(t *testing.T) {
	got, err := json.MarshalIndent(New().Info().Schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "schema.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s is stale; go test -update rewrites it (-file +schema):\n%s", path, diff)
	}
}

func TestConformance(t *testing.T) {
	sdktest.Conformance(t, New(), testdataConfig())
}

// TestThroughHost runs one list transaction across the plugin boundary:
// the note of the rcpt hook comes back at data.
func TestThroughHost(t *testing.T) {
	ctx := t.Context()
	r := sdktest.Start(t, New())
	host := sdktest.NewHost()
	if err := r.Configure(ctx, testdataConfig(), host); err != nil {
		t.Fatal(err)
	}
	sender := "eve@example.org"
	d, eff, err := r.Handle(ctx, rcptReq(sender, "ops@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != sdk.Accept || !cmp.Equal(eff.Recipients, addrs("eve@example.org", "frank@example.test")) {
		t.Fatalf("rcpt ops = %+v, %+v; want accept with the members", d, eff.Recipients)
	}
	if got := eff.Notes[noteList]; got != "ops@example.test" {
		t.Errorf("note %s = %q, want ops@example.test", noteList, got)
	}
	d, eff, err = r.Handle(ctx, noted(dataReq(sender, nil, "eve@example.org", "frank@example.test"), "ops@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.Effects{
		RemoveHeaders: removedFields,
		AddHeaders: []sdk.HeaderField{
			{Name: "List-Id", Value: "<ops.example.test>"},
			{Name: "List-Post", Value: "<mailto:ops@example.test>"},
			{Name: "Precedence", Value: "list"},
		},
		Sender: &sdk.Address{Local: "ops-bounces", Domain: "example.test"},
	}
	if diff := cmp.Diff(want, eff, cmpopts.EquateEmpty()); diff != "" || d.Verdict != sdk.Continue {
		t.Errorf("data: verdict %s, effects (-want +got):\n%s", d.Verdict, diff)
	}
	d, _, err = r.Handle(ctx, rcptReq("mallory@example.net", "team@example.test"))
	if err != nil || d.Verdict != sdk.Reject || d.Message != "Not allowed to post to this list" {
		t.Errorf("rcpt team from a stranger = %+v, %v; want 550 5.7.1", d, err)
	}
}
