package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/plugins/internal/address"
	"github.com/mailgate/gateway/plugins/internal/srs"
	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testdataConfig is the config of the files in testdata.
func testdataConfig() map[string]any {
	return map[string]any{
		"aliases_file":  filepath.Join("testdata", "aliases"),
		"virtual_file":  filepath.Join("testdata", "virtual"),
		"domain":        "example.test",
		"expn":          true,
		"expn_networks": []string{"10.0.0.0/8"},
		"srs_domain":    "example.test",
		"srs_secret":    "s3cret",
	}
}

func configured(t *testing.T, m map[string]any, host sdk.Host) *Aliases {
	t.Helper()
	p := New()
	if err := p.Configure(context.Background(), m, host); err != nil {
		t.Fatalf("Configure(%v) = %v", m, err)
	}
	return p
}

func TestParseTestdata(t *testing.T) {
	tb, err := load(filepath.Join("testdata", "aliases"), filepath.Join("testdata", "virtual"), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	a := func(s ...string) []target {
		var out []target
		for _, x := range s {
			if r, ok := strings.CutPrefix(x, `\`); ok {
				out = append(out, target{addr: r, noExpand: true})
			} else {
				out = append(out, target{addr: x})
			}
		}
		return out
	}
	wantAliases := map[string][]target{
		"postmaster@example.test": a("root@example.test"),
		"root@example.test":       a("alice@example.test", "bob@example.org"),
		"team@example.test":       a("alice@example.test", "bob@example.org", "carol@example.test"),
		"sales dept@example.test": a("sales@example.test"),
		"sales@example.test":      a(`\sales@example.test`, "dave@example.org"),
		"staff@example.test": a("grace@example.org", "heidi@example.test", "ivan@example.org",
			"judy@example.org", "frank@example.test"),
		"cmd@example.test":    a("alice@example.test"),
		"self@example.test":   a("self@example.test", "archive@example.org"),
		"loop-a@example.test": a("loop-b@example.test"),
		"loop-b@example.test": a("loop-c@example.test"),
		"loop-c@example.test": a("loop-a@example.test"),
	}
	wantVirtual := map[string][]target{
		"info@example.net":       a("alice@example.test", "sales@example.test"),
		"help@example.net":       a("info@example.net", "ken@example.org"),
		"webmaster@example.test": a("root@example.test"),
		"ring1@example.net":      a("ring2@example.net"),
		"ring2@example.net":      a("ring1@example.net"),
	}
	wantCatchAll := map[string][]target{
		"example.net": a("catchall@example.test"),
		"old.example": a("@example.test"),
	}
	wantWarnings := []string{
		`testdata/aliases:14: command target "|/usr/bin/procmail -m" skipped: a gateway cannot run commands`,
		`testdata/aliases:15: file target "/var/mail/archive" skipped: a gateway cannot write files`,
		`testdata/aliases:15: alias "file" has no deliverable targets; ignored`,
		`testdata/aliases:20: duplicate alias "Root" ignored (first at line 5)`,
	}
	opt := cmp.AllowUnexported(target{})
	if diff := cmp.Diff(wantAliases, tb.aliases, opt); diff != "" {
		t.Errorf("aliases (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantVirtual, tb.virtual, opt); diff != "" {
		t.Errorf("virtual (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantCatchAll, tb.catchAll, opt); diff != "" {
		t.Errorf("catch-alls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantWarnings, tb.warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	var files []string
	for _, s := range tb.files {
		files = append(files, s.path)
	}
	wantFiles := []string{"testdata/aliases", "testdata/staff.list", "testdata/more.list", "testdata/virtual"}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files read (-want +got):\n%s", diff)
	}
}

// writeFiles writes name → content into a new folder and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		aliases string // content of the aliases file; "" = none
		virtual string // content of the virtual file; "" = none
		domain  string
		extra   map[string]string // more files in the folder
		want    string            // the error, with the folder as DIR
	}{
		{"no colon", "alice bob\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: want `name: target, …`, got \"alice bob\": syntax error"},
		{"empty name", "postmaster: root\n: alice\n", "", "example.test", nil,
			"aliases: DIR/aliases:2: empty alias name: syntax error"},
		{"unterminated quote", "\"sales dept: x\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: unterminated quote in \"sales dept: x: syntax error"},
		{"space in name", "sales dept: x\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: alias name \"sales dept\" has white space; quote it: syntax error"},
		{"no targets", "# c\nalice:\n", "", "example.test", nil,
			"aliases: DIR/aliases:2: alias \"alice\" has no targets: syntax error"},
		{"name with @", "alice@example.test: bob\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: alias name \"alice@example.test\" has an @; names are local parts of domain example.test: syntax error"},
		{"continuation first", "  alice\nbob: carol\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: continuation line without an entry before it: syntax error"},
		{"bad target", "a: b@\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: \"b@\" is not an address: syntax error"},
		{"include missing", "a: :include:missing.list\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: :include: aliases: open DIR/missing.list: no such file or directory"},
		{"include of itself", "a: :include:a.list\n", "", "example.test", map[string]string{"a.list": "x\n:include:b.list\n", "b.list": ":include:a.list\n"},
			"aliases: DIR/b.list:1: :include: DIR/a.list includes itself: syntax error"},
		{"include empty", "a: :include:\n", "", "example.test", nil,
			"aliases: DIR/aliases:1: :include: without a file name: syntax error"},
		{"virtual: @ alone", "", "@ x@example.test\n", "", nil,
			"aliases: DIR/virtual:1: \"@\" is not @domain: syntax error"},
		{"virtual: no targets", "", "a@example.net\n", "", nil,
			"aliases: DIR/virtual:1: \"a@example.net\" has no targets: syntax error"},
		{"virtual: bare user without domain", "", "webmaster root@example.test\n", "", nil,
			"aliases: DIR/virtual:1: bare user name \"webmaster\" needs the domain setting: syntax error"},
		{"virtual: bare target without domain", "", "a@example.net root\n", "", nil,
			"aliases: DIR/virtual:1: \"root\" has no domain and the domain setting is empty: syntax error"},
		{"virtual: bad domain target", "", "@example.net @\n", "", nil,
			"aliases: DIR/virtual:1: \"@\" is not @domain: syntax error"},
		{"virtual: commas only", "", "a@example.net b@example.test\n,\n", "", nil,
			"aliases: DIR/virtual:2: want `pattern target, …`, got \",\": syntax error"},
		{"missing file", "", "", "", nil,
			"aliases: open DIR/virtual: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range tt.extra {
				files[k] = v
			}
			if tt.aliases != "" {
				files["aliases"] = tt.aliases
			}
			if tt.virtual != "" {
				files["virtual"] = tt.virtual
			}
			dir := writeFiles(t, files)
			var af, vf string
			if tt.aliases != "" {
				af = filepath.Join(dir, "aliases")
			} else {
				vf = filepath.Join(dir, "virtual")
			}
			_, err := load(af, vf, tt.domain)
			if err == nil {
				t.Fatalf("load = nil error, want %q", tt.want)
			}
			if got := strings.ReplaceAll(err.Error(), dir, "DIR"); got != tt.want {
				t.Errorf("load error\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	tb, err := load(filepath.Join("testdata", "aliases"), filepath.Join("testdata", "virtual"), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		want []string
		err  error
	}{
		{"postmaster@example.test", []string{"alice@example.test", "bob@example.org"}, nil},
		{"ROOT@Example.TEST", []string{"alice@example.test", "bob@example.org"}, nil},
		{"team@example.test", []string{"alice@example.test", "bob@example.org", "carol@example.test"}, nil},
		{"sales@example.test", []string{"sales@example.test", "dave@example.org"}, nil},
		{"sales dept@example.test", []string{"sales@example.test", "dave@example.org"}, nil},
		{"staff@example.test", []string{"grace@example.org", "heidi@example.test", "ivan@example.org", "judy@example.org", "frank@example.test"}, nil},
		{"self@example.test", []string{"self@example.test", "archive@example.org"}, nil},
		{"cmd@example.test", []string{"alice@example.test"}, nil},
		{"info@example.net", []string{"alice@example.test", "sales@example.test", "dave@example.org"}, nil},
		{"help@example.net", []string{"alice@example.test", "sales@example.test", "dave@example.org", "ken@example.org"}, nil},
		{"anyone@example.net", []string{"catchall@example.test"}, nil},
		{"bob@old.example", []string{"bob@example.test"}, nil},
		{"root@old.example", []string{"alice@example.test", "bob@example.org"}, nil},
		{"webmaster@example.test", []string{"alice@example.test", "bob@example.org"}, nil},
		{"loop-a@example.test", nil, ErrLoop},
		{"loop-b@example.test", nil, ErrLoop},
		{"ring1@example.net", nil, ErrLoop},
		{"alice@example.test", nil, errNotFound},
		{"file@example.test", nil, errNotFound},
		{"postmaster@example.org", nil, errNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := tb.expand(tt.addr)
			if !errors.Is(err, tt.err) {
				t.Fatalf("expand(%q) error = %v, want %v", tt.addr, err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("expand(%q) (-want +got):\n%s", tt.addr, diff)
			}
		})
	}
	t.Run("loop error names the path", func(t *testing.T) {
		_, err := tb.expand("loop-a@example.test")
		want := "aliases: alias loop: loop-a@example.test -> loop-b@example.test -> loop-c@example.test -> loop-a@example.test"
		if err == nil || err.Error() != want {
			t.Errorf("error = %v, want %s", err, want)
		}
	})
}

// TestExpandDepth: ten aliases deep is fine, eleven is not; a catch-all
// whose target is in its own domain ends at that target.
func TestExpandDepth(t *testing.T) {
	chain := func(n int) string {
		var b strings.Builder
		for i := 1; i < n; i++ {
			fmt.Fprintf(&b, "a%d: a%d\n", i, i+1)
		}
		fmt.Fprintf(&b, "a%d: end@example.org\n", n)
		return b.String()
	}
	for _, tt := range []struct {
		n    int
		want []string
		err  error
	}{
		{maxDepth, []string{"end@example.org"}, nil},
		{maxDepth + 1, nil, ErrTooDeep},
	} {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"aliases": chain(tt.n)})
			tb, err := load(filepath.Join(dir, "aliases"), "", "example.test")
			if err != nil {
				t.Fatal(err)
			}
			got, err := tb.expand("a1@example.test")
			if !errors.Is(err, tt.err) {
				t.Fatalf("expand error = %v, want %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("expand (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("catch-all into its own domain", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"virtual": "@example.net catchall@example.net\n"})
		tb, err := load("", filepath.Join(dir, "virtual"), "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := tb.expand("x@example.net")
		if err != nil || !cmp.Equal(got, []string{"catchall@example.net"}) {
			t.Errorf("expand = %v, %v; want [catchall@example.net]", got, err)
		}
	})
}

func rcptReq(local, domain string) *sdk.Request {
	return &sdk.Request{
		Stage:   sdk.StageRcpt,
		Session: &sdk.Session{ID: "s1"},
		Txn:     &sdk.Txn{Sender: sdk.Address{Local: "x", Domain: "example.org"}},
		Rcpt:    &sdk.Recipient{Address: sdk.Address{Local: local, Domain: domain}},
	}
}

func addrs(s ...string) []sdk.Address {
	var out []sdk.Address
	for _, a := range s {
		out = append(out, address.Split(a))
	}
	return out
}

func TestRcpt(t *testing.T) {
	p := configured(t, testdataConfig(), nil)
	tests := []struct {
		name     string
		req      *sdk.Request
		want     sdk.Decision
		wantRcpt []sdk.Address
	}{
		{"alias", rcptReq("team", "example.test"),
			sdk.AcceptDecision().WithReason("aliases: team@example.test expands to alice@example.test, bob@example.org, carol@example.test"),
			addrs("alice@example.test", "bob@example.org", "carol@example.test")},
		{"virtual catch-all", rcptReq("anyone", "example.net"),
			sdk.AcceptDecision().WithReason("aliases: anyone@example.net expands to catchall@example.test"),
			addrs("catchall@example.test")},
		{"unknown", rcptReq("alice", "example.test"), sdk.ContinueDecision(), nil},
		{"other domain", rcptReq("team", "example.org"), sdk.ContinueDecision(), nil},
		{"loop", rcptReq("loop-b", "example.test"),
			sdk.RejectDecision(550, sdk.EnhancedCode{5, 4, 6}, "Alias loop detected").
				WithReason("aliases: alias loop: loop-b@example.test -> loop-c@example.test -> loop-a@example.test -> loop-b@example.test"),
			nil},
		{"no recipient", &sdk.Request{Stage: sdk.StageRcpt}, sdk.ContinueDecision(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, eff, err := p.Rcpt(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRcpt, eff.Recipients); diff != "" {
				t.Errorf("recipients (-want +got):\n%s", diff)
			}
			if err := got.Validate(sdk.StageRcpt); err != nil {
				t.Errorf("decision does not validate: %v", err)
			}
		})
	}
	t.Run("self only continues", func(t *testing.T) {
		dir := writeFiles(t, map[string]string{"aliases": "me: me\n"})
		p := configured(t, map[string]any{"aliases_file": filepath.Join(dir, "aliases"), "domain": "example.test"}, nil)
		got, eff, err := p.Rcpt(context.Background(), rcptReq("me", "example.test"))
		if err != nil || got != sdk.ContinueDecision() || !eff.IsZero() {
			t.Errorf("Rcpt = %+v, %+v, %v; want continue, no effects", got, eff, err)
		}
	})
}

func TestEXPN(t *testing.T) {
	on := configured(t, testdataConfig(), nil)
	offCfg := testdataConfig()
	delete(offCfg, "expn")
	off := configured(t, offCfg, nil)
	user := &sdk.Session{ID: "s1", ClientIP: "192.0.2.9", AuthUser: "bob"}
	stranger := &sdk.Session{ID: "s1", ClientIP: "192.0.2.9"}
	inside := &sdk.Session{ID: "s1", ClientIP: "10.0.0.25"}
	cmd := func(s *sdk.Session, verb, arg string) *sdk.Request {
		return &sdk.Request{Stage: sdk.StageCommand, Session: s, Command: verb, Arg: arg}
	}
	team := []string{"<alice@example.test>", "<bob@example.org>", "<carol@example.test>"}
	tests := []struct {
		name  string
		p     *Aliases
		req   *sdk.Request
		want  sdk.Verdict
		lines []string
	}{
		{"name", on, cmd(user, "EXPN", "team"), sdk.Accept, team},
		{"from expn_networks", on, cmd(inside, "EXPN", "team"), sdk.Accept, team},
		{"from a stranger", on, cmd(stranger, "EXPN", "team"), sdk.Continue, nil},
		{"address in brackets", on, cmd(user, "expn", " <root@example.test> "), sdk.Accept, []string{"<alice@example.test>", "<bob@example.org>"}},
		{"virtual address", on, cmd(user, "EXPN", "help@example.net"), sdk.Accept,
			[]string{"<alice@example.test>", "<sales@example.test>", "<dave@example.org>", "<ken@example.org>"}},
		{"not an alias", on, cmd(user, "EXPN", "alice"), sdk.Continue, nil},
		{"loop", on, cmd(user, "EXPN", "loop-a"), sdk.Reject, nil},
		{"empty", on, cmd(user, "EXPN", ""), sdk.Continue, nil},
		{"other verb", on, cmd(user, "VRFY", "team"), sdk.Continue, nil},
		{"expn off", off, cmd(user, "EXPN", "team"), sdk.Continue, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, eff, err := tt.p.Command(context.Background(), tt.req)
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

// srsAt is the SRS address of carol@sender.test made at now under
// testdataConfig's settings.
func srsAt(now time.Time) string {
	return srs.Rewriter{Domain: "example.test", Secret: "s3cret", MaxAge: 21}.Forward("carol", "sender.test", now)
}

// A bounce to an SRS address of ours goes back to the original sender;
// one to a forged or expired address is refused.
func TestRcptSRS(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := configured(t, testdataConfig(), nil)
	p.now = func() time.Time { return now }
	valid := srsAt(now.Add(-21 * 24 * time.Hour))
	expired := srsAt(now.Add(-22 * 24 * time.Hour))
	forged := strings.Replace(valid, "=carol@", "=mallory@", 1)
	invalid := sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "Invalid SRS address")
	tests := []struct {
		name     string
		rcpt     string
		want     sdk.Decision
		wantRcpt []sdk.Address
	}{
		{"valid", valid, sdk.AcceptDecision().WithReason("aliases: SRS address " + valid + " leads back to carol@sender.test"),
			addrs("carol@sender.test")},
		{"expired", expired, invalid.WithReason("aliases: " + expired + ": srs: expired"), nil},
		{"forged", forged, invalid.WithReason("aliases: " + forged + ": srs: bad hash"), nil},
		{"SRS of another domain", strings.Replace(valid, "@example.test", "@example.org", 1), sdk.ContinueDecision(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, domain, _ := address.Cut(tt.rcpt)
			got, eff, err := p.Rcpt(context.Background(), rcptReq(local, domain))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRcpt, eff.Recipients); diff != "" {
				t.Errorf("recipients (-want +got):\n%s", diff)
			}
		})
	}
}

// Mail forwarded out of the local domains gets an SRS sender at data.
func TestDataSRS(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dataReq := func(sender string, rcpts ...string) *sdk.Request {
		r := &sdk.Request{Stage: sdk.StageData, Txn: &sdk.Txn{Sender: address.Split(sender)}}
		for _, a := range rcpts {
			r.Txn.Recipients = append(r.Txn.Recipients, sdk.Recipient{Address: address.Split(a)})
		}
		return r
	}
	withLocal := testdataConfig()
	withLocal["local_domains"] = []string{"example.test", "example.org"}
	noSRS := testdataConfig()
	delete(noSRS, "srs_domain")
	delete(noSRS, "srs_secret")
	srsSender := address.Split(srsAt(now))
	tests := []struct {
		name string
		cfg  map[string]any
		r    *sdk.Request
		want *sdk.Address
	}{
		{"forwarded out", testdataConfig(), dataReq("carol@sender.test", "alice@example.test", "dave@example.org"), &srsSender},
		{"an @domain target in a local domain", testdataConfig(), dataReq("carol@sender.test", "x@example.test"), nil},
		{"not forwarded", testdataConfig(), dataReq("carol@sender.test", "alice@example.test"), nil},
		{"out, but no alias's target", testdataConfig(), dataReq("carol@sender.test", "zed@example.org"), nil},
		{"the target's domain is local", withLocal, dataReq("carol@sender.test", "dave@example.org"), nil},
		{"a local sender", testdataConfig(), dataReq("carol@example.net", "dave@example.org"), nil},
		{"the null sender", testdataConfig(), dataReq("", "dave@example.org"), nil},
		{"no SRS", noSRS, dataReq("carol@sender.test", "dave@example.org"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configured(t, tt.cfg, nil)
			p.now = func() time.Time { return now }
			got, eff, err := p.Data(context.Background(), tt.r)
			if err != nil || got.Verdict != sdk.Continue {
				t.Fatalf("Data = %+v, %v; want continue", got, err)
			}
			if diff := cmp.Diff(tt.want, eff.Sender); diff != "" {
				t.Errorf("sender (-want +got):\n%s", diff)
			}
		})
	}
}

// logHost is an sdk.Host that records log lines.
type logHost struct {
	sdk.Host // nil: the other services are not used
	mu       sync.Mutex
	lines    []string
}

func (h *logHost) Log(_ context.Context, level, msg string, fields map[string]string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	line := level + " " + msg
	if e, ok := fields["err"]; ok {
		line += ": " + e
	}
	h.lines = append(h.lines, line)
	return nil
}

func (h *logHost) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.lines
	h.lines = nil
	return l
}

func TestReload(t *testing.T) {
	dir := writeFiles(t, map[string]string{"aliases": "team: alice\n"})
	path := filepath.Join(dir, "aliases")
	host := &logHost{}
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := New()
	p.now = func() time.Time { return clock }
	err := p.Configure(context.Background(), map[string]any{
		"aliases_file": path, "domain": "example.test", "reload_interval": "10s",
	}, host)
	if err != nil {
		t.Fatal(err)
	}
	// rewrite changes the file, with an mtime that differs for sure.
	mtime := time.Now()
	rewrite := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Second)
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(step string, want []sdk.Address) {
		t.Helper()
		_, eff, err := p.Rcpt(context.Background(), rcptReq("team", "example.test"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, eff.Recipients); diff != "" {
			t.Errorf("%s: recipients (-want +got):\n%s", step, diff)
		}
	}
	expect("first read", addrs("alice@example.test"))

	rewrite("team: bob\n")
	clock = clock.Add(9 * time.Second)
	expect("changed, before the interval", addrs("alice@example.test"))
	clock = clock.Add(time.Second)
	expect("changed, at the interval", addrs("bob@example.test"))
	if diff := cmp.Diff([]string{"info aliases: files reloaded"}, host.take()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}

	rewrite("team bob\n")
	clock = clock.Add(10 * time.Second)
	expect("broken file keeps the last good read", addrs("bob@example.test"))
	want := []string{"error aliases: reload failed, keeping the aliases read before: aliases: " + path +
		":1: want `name: target, …`, got \"team bob\": syntax error"}
	if diff := cmp.Diff(want, host.take()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}

	rewrite("team: carol, |/bin/true\n")
	clock = clock.Add(10 * time.Second)
	expect("fixed", addrs("carol@example.test"))
	want = []string{
		"info aliases: files reloaded",
		"warn aliases: " + path + `:1: command target "|/bin/true" skipped: a gateway cannot run commands`,
	}
	if diff := cmp.Diff(want, host.take()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}

	clock = clock.Add(time.Hour)
	expect("unchanged", addrs("carol@example.test"))
	if l := host.take(); len(l) != 0 {
		t.Errorf("logs = %q, want none", l)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]any
		want string
	}{
		{"no files", map[string]any{}, "config: aliases_file: set aliases_file, virtual_file or both"},
		{"aliases without domain", map[string]any{"aliases_file": "testdata/aliases"},
			"config: domain: required with aliases_file: the names of an aliases file have no domain"},
		{"bad domain", map[string]any{"virtual_file": "testdata/virtual", "domain": "a b"},
			`config: domain: "a b" is not a domain name`},
		{"bad interval", map[string]any{"virtual_file": "testdata/virtual", "reload_interval": "soon"},
			`config: reload_interval: want a duration such as "10s" or "0s", got "soon"`},
		{"negative interval", map[string]any{"virtual_file": "testdata/virtual", "reload_interval": "-1s"},
			`config: reload_interval: want a duration such as "10s" or "0s", got "-1s"`},
		{"unknown", map[string]any{"virtual_file": "testdata/virtual", "file": "/etc/aliases"},
			"config: file: unknown setting"},
		{"expn not bool", map[string]any{"virtual_file": "testdata/virtual", "expn": "yes"},
			"config: expn: want bool, got string"},
		{"SRS without a secret", map[string]any{"virtual_file": "testdata/virtual", "srs_domain": "example.test"},
			"config: srs_secret: required with srs_domain"},
		{"SRS secret without a domain", map[string]any{"virtual_file": "testdata/virtual", "srs_secret": "x"},
			"config: srs_domain: required with srs_secret"},
		{"bad SRS domain", map[string]any{"virtual_file": "testdata/virtual", "srs_domain": "a@b", "srs_secret": "x"},
			`config: srs_domain: "a@b" is not a domain name`},
		{"bad SRS max age", map[string]any{"virtual_file": "testdata/virtual", "srs_max_age": 1.5},
			"config: srs_max_age: want a whole number of days from 0 to 1000, got 1.5"},
		{"bad local domain", map[string]any{"virtual_file": "testdata/virtual", "local_domains": []string{"example.test", "x y"}},
			`config: local_domains: "x y" is not a domain name`},
		{"bad expn network", map[string]any{"virtual_file": "testdata/virtual", "expn_networks": []string{"10/8"}},
			`config: expn_networks: "10/8" is not a network such as "10.0.0.0/8" or an IP`},
		{"missing aliases file", map[string]any{"aliases_file": "testdata/nonesuch", "domain": "example.test"},
			"config: aliases_file: aliases: open testdata/nonesuch: no such file or directory"},
		{"broken virtual file", map[string]any{"aliases_file": "testdata/aliases", "virtual_file": "testdata/staff.list", "domain": "example.test"},
			`config: virtual_file: aliases: testdata/staff.list:3: "ivan@example.org" has no targets: syntax error`},
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
			if got := errs[0].Error(); got != tt.want {
				t.Errorf("first error\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"aliases", "virtual", "staff.list"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("\"a\\\"b\": \"c d\"@e, x\n\t, y"))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &loader{t: &table{virtual: map[string][]target{}, aliases: map[string][]target{}, catchAll: map[string][]target{}}, domain: "example.test"}
		if err := l.parseAliases("a", data); err == nil {
			for k, ts := range l.t.aliases {
				if len(ts) == 0 {
					t.Errorf("alias %q has no targets", k)
				}
			}
		}
		if err := l.parseVirtual("v", data); err == nil {
			for _, e := range l.t.aliases {
				_, _ = l.t.expand(e[0].addr)
			}
		}
	})
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

// TestThroughHost expands aliases across the plugin boundary.
func TestThroughHost(t *testing.T) {
	ctx := t.Context()
	r := sdktest.Start(t, New())
	host := sdktest.NewHost()
	if err := r.Configure(ctx, testdataConfig(), host); err != nil {
		t.Fatal(err)
	}
	d, eff, err := r.Handle(ctx, rcptReq("staff", "example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != sdk.Accept {
		t.Errorf("rcpt staff: verdict %s, want accept", d.Verdict)
	}
	want := addrs("grace@example.org", "heidi@example.test", "ivan@example.org", "judy@example.org", "frank@example.test")
	if diff := cmp.Diff(want, eff.Recipients); diff != "" {
		t.Errorf("rcpt staff: recipients (-want +got):\n%s", diff)
	}
	d, _, err = r.Handle(ctx, rcptReq("loop-c", "example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != sdk.Reject || d.Code != 550 || d.Enhanced != (sdk.EnhancedCode{5, 4, 6}) || d.Message != "Alias loop detected" {
		t.Errorf("rcpt loop-c = %+v, want 550 5.4.6 Alias loop detected", d)
	}
	d, eff, err = r.Handle(ctx, &sdk.Request{Stage: sdk.StageCommand, Session: &sdk.Session{ID: "s", AuthUser: "bob"}, Command: "EXPN", Arg: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != sdk.Accept || !cmp.Equal(eff.ReplyLines, []string{"<alice@example.test>", "<bob@example.org>"}) {
		t.Errorf("EXPN root = %+v, %q; want accept with two lines", d, eff.ReplyLines)
	}
	var warns []string
	for _, l := range host.Logs() {
		warns = append(warns, l.Level+" "+l.Message)
	}
	if len(warns) != 4 {
		t.Errorf("logs at configure = %q, want the 4 warnings of testdata/aliases", warns)
	}
}
