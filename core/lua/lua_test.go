package lua_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/sdk"
)

// load compiles src as script "t" and closes it at the end of the test.
func load(t testing.TB, src string, opt ...lua.Options) *lua.Script {
	t.Helper()
	o := lua.Options{}
	if len(opt) > 0 {
		o = opt[0]
	}
	if o.Name == "" {
		o.Name = "t"
	}
	o.Source = src
	s, err := lua.Load(o)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func session() *hook.Session {
	return &hook.Session{
		ID: "S1", Listener: "mx", ClientIP: netip.MustParseAddr("192.0.2.7"), Port: 40000,
		HELO: "client.example", ESMTP: true, TLS: true, AuthUser: "alice",
	}
}

func testEnvelope() *envelope.Envelope {
	return &envelope.Envelope{
		Sender: envelope.Address{Local: "bob", Domain: "sender.example"},
		Recipients: []envelope.Recipient{
			{Address: envelope.Address{Local: "r1", Domain: "dest.example"}},
			{Address: envelope.Address{Local: "r2", Domain: "dest.example"}},
		},
		Size: 1234, Body: envelope.Body8BitMIME, SMTPUTF8: true, Ret: envelope.RetHdrs, EnvID: "ID1", Auth: "<>", RequireTLS: true,
		ClientIP: "198.51.100.9", ClientHELO: "queued.example", AuthUser: "carol", TLS: true,
	}
}

// request builds a plausible request for stage.
func request(stage sdk.Stage) *hook.Request {
	req := &hook.Request{Stage: stage, Session: session()}
	switch stage {
	case sdk.StageConnect, sdk.StageHelo, sdk.StageAuth:
		req.Arg = "PLAIN"
		if stage != sdk.StageAuth {
			req.Arg = ""
		}
		return req
	case sdk.StageCommand:
		req.Command, req.Arg = "VRFY", "postmaster"
	}
	req.Envelope = testEnvelope()
	switch stage {
	case sdk.StageRcpt:
		req.Rcpt = &envelope.Recipient{
			Address: envelope.Address{Local: "new", Domain: "dest.example"},
			Notify:  envelope.NotifySuccess | envelope.NotifyFailure, ORCPT: "rfc822;orig@dest.example",
		}
	case sdk.StageData:
		req.Message = testMessage()
	case sdk.StagePredelivery:
		req.Session = nil
		req.Rcpt = &req.Envelope.Recipients[0]
		req.Arg = "dest.example"
		req.Message = testMessage()
	case sdk.StageDelivered, sdk.StageDeferred, sdk.StageBounced:
		req.Session = nil
	}
	return req
}

// fakeMessage implements hook.Message.
type fakeMessage struct {
	fields      []sdk.HeaderField
	body        string
	err         error
	panicHeader bool
	bodyCalls   atomic.Int32
}

func testMessage() *fakeMessage {
	return &fakeMessage{
		fields: []sdk.HeaderField{
			{Name: "From", Value: "Bob <bob@sender.example>"},
			{Name: "To", Value: "r1@dest.example"},
			{Name: "Received", Value: "from a"},
			{Name: "received", Value: "from b"},
			{Name: "Subject", Value: "hello"},
		},
		body: "line 1\r\nline 2\r\n",
	}
}

func (m *fakeMessage) Header() ([]sdk.HeaderField, error) {
	if m.panicHeader {
		panic("fake message: header exploded")
	}
	if m.err != nil {
		return nil, m.err
	}
	return append([]sdk.HeaderField(nil), m.fields...), nil
}

func (m *fakeMessage) Body(limit int) ([]byte, error) {
	m.bodyCalls.Add(1)
	if m.err != nil {
		return nil, m.err
	}
	b := m.body
	if limit > 0 && len(b) > limit {
		b = b[:limit]
	}
	return []byte(b), nil
}

func (m *fakeMessage) Size() int64 {
	n := 0
	for _, f := range m.fields {
		n += len(f.Name) + 2 + len(f.Value) + 2
	}
	return int64(n + 2 + len(m.body))
}

func handle(t *testing.T, s *lua.Script, req *hook.Request) (sdk.Decision, sdk.Effects) {
	t.Helper()
	d, eff, err := s.Handle(context.Background(), req)
	if err != nil {
		t.Fatalf("Handle(%s): %v", req.Stage, err)
	}
	return d, eff
}

// TestVerdicts runs every verdict constructor at every stage.
func TestVerdicts(t *testing.T) {
	tests := []struct {
		name string
		expr string // the value on_<stage> returns
		want sdk.Decision
	}{
		{"nil", "nil", sdk.Decision{}},
		{"no return", "", sdk.Decision{}},
		{"continue", "gw.continue()", sdk.Decision{}},
		{"accept", "gw.accept()", sdk.Decision{Verdict: sdk.Accept}},
		{"accept with reply", `gw.accept(250, "2.1.5", "Recipient ok")`,
			sdk.Decision{Verdict: sdk.Accept, Code: 250, Enhanced: sdk.EnhancedCode{2, 1, 5}, Message: "Recipient ok"}},
		{"reject default", "gw.reject()", sdk.Decision{Verdict: sdk.Reject}},
		{"reject", `gw.reject(550, "5.7.1", "Relaying denied")`,
			sdk.Decision{Verdict: sdk.Reject, Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: "Relaying denied"}},
		{"reject with reason arg", `gw.reject(554, "5.7.0", "No", "rule 7")`,
			sdk.Decision{Verdict: sdk.Reject, Code: 554, Enhanced: sdk.EnhancedCode{5, 7, 0}, Message: "No", Reason: "rule 7"}},
		{"reject code only", `gw.reject(550)`, sdk.Decision{Verdict: sdk.Reject, Code: 550}},
		{"reject disconnect", `gw.reject(554, "5.7.1", "Go away"):disconnect()`,
			sdk.Decision{Verdict: sdk.Reject, Code: 554, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: "Go away", Disconnect: true}},
		{"defer with reason method", `gw.defer(451, "4.7.1", "Greylisted"):reason("greylist new triplet")`,
			sdk.Decision{Verdict: sdk.Defer, Code: 451, Enhanced: sdk.EnhancedCode{4, 7, 1}, Message: "Greylisted", Reason: "greylist new triplet"}},
		{"defer chained", `gw.defer(421, "4.3.2"):reason("busy"):disconnect()`,
			sdk.Decision{Verdict: sdk.Defer, Code: 421, Enhanced: sdk.EnhancedCode{4, 3, 2}, Reason: "busy", Disconnect: true}},
		{"drop", "gw.drop()", sdk.Decision{Verdict: sdk.Drop}},
		{"drop with reason", `gw.drop("spam trap")`, sdk.Decision{Verdict: sdk.Drop, Reason: "spam trap"}},
	}
	for _, stage := range sdk.Stages {
		for _, tt := range tests {
			t.Run(string(stage)+"/"+tt.name, func(t *testing.T) {
				ret := ""
				if tt.expr != "" {
					ret = "return " + tt.expr
				}
				s := load(t, fmt.Sprintf("function on_%s(ctx)\n  %s\nend\n", stage, ret))
				d, eff := handle(t, s, request(stage))
				if diff := cmp.Diff(tt.want, d); diff != "" {
					t.Errorf("decision (-want +got):\n%s", diff)
				}
				if !eff.IsZero() {
					t.Errorf("effects = %+v, want none", eff)
				}
				if err := d.Validate(stage); err != nil {
					t.Errorf("Validate(%s) = %v, want nil", stage, err)
				}
			})
		}
	}
}

// TestInvalidDecisions: decisions the constructors accept but Validate
// refuses come back as given; the chain falls back to the stage default.
func TestInvalidDecisions(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want sdk.Decision
	}{
		{"reject with 2xx", `gw.reject(250, "5.7.1", "x")`,
			sdk.Decision{Verdict: sdk.Reject, Code: 250, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: "x"}},
		{"defer with class 5", `gw.defer(451, "5.7.1", "x")`,
			sdk.Decision{Verdict: sdk.Defer, Code: 451, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: "x"}},
		{"reject with CRLF text", `gw.reject(550, "5.7.1", "a\r\nMAIL FROM:<>")`,
			sdk.Decision{Verdict: sdk.Reject, Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: "a\r\nMAIL FROM:<>"}},
		{"accept disconnect", `gw.accept():disconnect()`, sdk.Decision{Verdict: sdk.Accept, Disconnect: true}},
		{"long text", `gw.reject(550, "5.7.1", string.rep("x", 401))`,
			sdk.Decision{Verdict: sdk.Reject, Code: 550, Enhanced: sdk.EnhancedCode{5, 7, 1}, Message: strings.Repeat("x", 401)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, "function on_rcpt(ctx) return "+tt.expr+" end")
			d, _ := handle(t, s, request(sdk.StageRcpt))
			if diff := cmp.Diff(tt.want, d); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if err := d.Validate(sdk.StageRcpt); !errors.Is(err, sdk.ErrInvalidDecision) {
				t.Errorf("Validate = %v, want ErrInvalidDecision", err)
			}
		})
	}
}

// TestScriptErrors: runtime errors, bad return values and misused
// constructors make Handle fail with file:line.
func TestScriptErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the whole error text
	}{
		{"index nil", "function on_rcpt(ctx)\n  local x\n  return x.y\nend",
			"lua.t: on_rcpt: t.lua:3: attempt to index a non-table object(nil) with key 'y'"},
		{"error()", "function on_rcpt(ctx)\n\n  error('boom')\nend", "lua.t: on_rcpt: t.lua:3: boom"},
		{"bad return", "\nfunction on_rcpt(ctx)\n  return 'accept'\nend",
			"lua.t: on_rcpt: t.lua:2: on_rcpt returned a string; want a gw verdict or nil"},
		{"table return", "function on_rcpt(ctx) return {verdict='accept'} end",
			"lua.t: on_rcpt: t.lua:1: on_rcpt returned a table; want a gw verdict or nil"},
		{"bad enhanced", "function on_rcpt(ctx)\n  return gw.reject(550, '5.7', 'x')\nend",
			`lua.t: on_rcpt: t.lua:2: bad argument #2 to reject (gw.reject: bad enhanced status code "5.7")`},
		{"bad code", "function on_rcpt(ctx)\n  return gw.defer(450.5)\nend",
			"lua.t: on_rcpt: t.lua:2: bad argument #1 to defer (gw.defer: code must be an integer from 0 to 999)"},
		{"ctx is read-only", "function on_rcpt(ctx)\n  ctx.stage = 'x'\nend", "lua.t: on_rcpt: t.lua:2: ctx is read-only"},
		{"stack overflow", "local function f(n) return 1 + f(n + 1) end\nfunction on_rcpt(ctx) f(1) end",
			"lua.t: on_rcpt: t.lua:1: stack overflow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, tt.src)
			d, eff, err := s.Handle(context.Background(), request(sdk.StageRcpt))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Handle error = %v\nwant %s", err, tt.want)
			}
			if _, ok := errors.AsType[*lua.ScriptError](err); !ok {
				t.Errorf("error %T is not a *lua.ScriptError", err)
			}
			if d != (sdk.Decision{}) || !eff.IsZero() {
				t.Errorf("with an error got decision %+v effects %+v, want zero", d, eff)
			}
		})
	}
}

func TestRuntimeErrorNamesFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "scripts")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "relay.lua")
	src := "-- relay\nfunction on_mail(ctx)\n  local n = nil\n  return n + 1\nend\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := lua.Load(lua.Options{Name: "relay", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, _, err = s.Handle(context.Background(), request(sdk.StageMail))
	want := "lua.relay: on_mail: " + path + ":4: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Handle error = %v, want prefix %q", err, want)
	}
	se, ok := errors.AsType[*lua.ScriptError](err)
	if !ok || !strings.Contains(se.Trace, path+":4") {
		t.Errorf("trace = %q, want it to name %s:4", se.Trace, path)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{"syntax", "function on_rcpt(ctx\n\n  return 1\nend", "lua: load lua.t: t.lua:3: syntax error near 'return'"},
		{"syntax at EOF", "x = 1 +\n", "lua: load lua.t: t.lua: at end of file: syntax error"},
		{"compile", "\ngoto nowhere\n", "lua: load lua.t: t.lua:3: no visible label 'nowhere' for <goto> at line 2"},
		{"top-level error", "local x = 1\n\nerror('no config')\n", "lua: load: lua.t: top level: t.lua:3: no config"},
		{"top-level binding misuse", "gw.cidr.contains('300.0.0.0/8', '10.0.0.1')", `lua: load: lua.t: top level: t.lua:1: gw.cidr.contains: bad CIDR "300.0.0.0/8"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := lua.Load(lua.Options{Name: "t", Source: tt.src})
			if err == nil {
				s.Close()
				t.Fatalf("Load succeeded, want error %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Load error = %q\nwant %q", err, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := lua.Load(lua.Options{Name: "t", Path: filepath.Join(t.TempDir(), "nope.lua")})
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Load error = %v, want os.ErrNotExist", err)
		}
	})
	t.Run("bad params", func(t *testing.T) {
		_, err := lua.Load(lua.Options{Name: "t", Source: "", Params: map[string]any{"x": struct{}{}}})
		if err == nil || !strings.Contains(err.Error(), "params: x: unsupported value of type struct {}") {
			t.Errorf("Load error = %v", err)
		}
	})
}

func TestStages(t *testing.T) {
	s := load(t, `
function on_data(ctx) end
function on_rcpt(ctx) end
on_helo = 5           -- not a function: not a stage
function on_disconnect() end
function on_other() end
`)
	want := []sdk.Stage{sdk.StageRcpt, sdk.StageData, sdk.StageDisconnect}
	if diff := cmp.Diff(want, s.Stages()); diff != "" {
		t.Errorf("Stages (-want +got):\n%s", diff)
	}
	if s.Name() != "lua.t" {
		t.Errorf("Name = %q, want lua.t", s.Name())
	}
	// An undefined stage answers Continue without a state.
	d, eff := handle(t, s, request(sdk.StageMail))
	if d != (sdk.Decision{}) || !eff.IsZero() {
		t.Errorf("undefined stage: %+v %+v", d, eff)
	}
}

// TestCtx records what the ctx object shows at each stage as notes.
func TestCtx(t *testing.T) {
	const src = `
local function dump(ctx)
  local out = {}
  local function put(k, v)
    if type(v) == "table" then v = "{" .. table.concat(v, ",") .. "}" end
    out[#out + 1] = k .. "=" .. tostring(v)
  end
  put("stage", ctx.stage)
  local c = ctx.conn
  for _, k in ipairs{"id", "listener", "ip", "port", "helo", "esmtp", "tls", "auth_user"} do put("conn." .. k, c[k]) end
  put("command", ctx.command)
  put("arg", ctx.arg)
  put("msg", ctx.msg ~= nil)
  local x = ctx.txn
  if x then
    put("sender", x.sender)
    put("recipients", x.recipients)
    put("rcpt", x.rcpt)
    put("notify", x.notify)
    put("orcpt", x.orcpt)
    for _, k in ipairs{"ret", "envid", "smtputf8", "body", "size", "auth", "requiretls", "tls_optional"} do put("params." .. k, x.params[k]) end
  else
    put("txn", nil)
  end
  put("unknown", ctx.nope)
  ctx:note("dump", table.concat(out, " "))
end
`
	var b strings.Builder
	b.WriteString(src)
	for _, st := range sdk.Stages {
		fmt.Fprintf(&b, "function on_%s(ctx) dump(ctx) end\n", st)
	}
	s := load(t, b.String())
	const conn = "conn.id=S1 conn.listener=mx conn.ip=192.0.2.7 conn.port=40000 conn.helo=client.example conn.esmtp=true conn.tls=true conn.auth_user=alice"
	const queued = "conn.id= conn.listener= conn.ip=198.51.100.9 conn.port=0 conn.helo=queued.example conn.esmtp=false conn.tls=true conn.auth_user=carol"
	const txn = "sender=bob@sender.example recipients={r1@dest.example,r2@dest.example}"
	const params = "params.ret=HDRS params.envid=ID1 params.smtputf8=true params.body=8BITMIME params.size=1234 params.auth=<> params.requiretls=true params.tls_optional=false"
	want := map[sdk.Stage]string{
		sdk.StageConnect:     "stage=connect " + conn + " command=nil arg=nil msg=false txn=nil unknown=nil",
		sdk.StageHelo:        "stage=helo " + conn + " command=nil arg=nil msg=false txn=nil unknown=nil",
		sdk.StageAuth:        "stage=auth " + conn + " command=nil arg=PLAIN msg=false txn=nil unknown=nil",
		sdk.StageMail:        "stage=mail " + conn + " command=nil arg=nil msg=false " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
		sdk.StageRcpt:        "stage=rcpt " + conn + " command=nil arg=nil msg=false " + txn + " rcpt=new@dest.example notify={SUCCESS,FAILURE} orcpt=rfc822;orig@dest.example " + params + " unknown=nil",
		sdk.StageCommand:     "stage=command " + conn + " command=VRFY arg=postmaster msg=false " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
		sdk.StageData:        "stage=data " + conn + " command=nil arg=nil msg=true " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
		sdk.StagePredelivery: "stage=predelivery " + queued + " command=nil arg=dest.example msg=true " + txn + " rcpt=r1@dest.example notify={} orcpt=nil " + params + " unknown=nil",
		sdk.StageDelivered:   "stage=delivered " + queued + " command=nil arg=nil msg=false " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
		sdk.StageDeferred:    "stage=deferred " + queued + " command=nil arg=nil msg=false " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
		sdk.StageBounced:     "stage=bounced " + queued + " command=nil arg=nil msg=false " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
		sdk.StageDisconnect:  "stage=disconnect " + conn + " command=nil arg=nil msg=false " + txn + " rcpt=nil notify=nil orcpt=nil " + params + " unknown=nil",
	}
	for _, stage := range sdk.Stages {
		t.Run(string(stage), func(t *testing.T) {
			_, eff := handle(t, s, request(stage))
			if got := eff.Notes["lua.t/dump"]; got != want[stage] {
				t.Errorf("ctx at %s:\n got %s\nwant %s", stage, got, want[stage])
			}
		})
	}
}

// TestCtxNotes: ctx.notes is a copy of the notes the request carries
// (those of earlier hooks); a script that changes it changes nothing.
func TestCtxNotes(t *testing.T) {
	s := load(t, `
function on_rcpt(ctx)
  local keys = {}
  for k, v in pairs(ctx.notes) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  ctx.notes["plugin.x/list"] = "changed"
  ctx:note("seen", table.concat(keys, " "))
end
`, lua.Options{Pool: 1})
	req := request(sdk.StageRcpt)
	req.Notes = map[string]string{"plugin.x/list": "team", "lua.relay/score": "5"}
	for i, want := range []string{"lua.relay/score=5 plugin.x/list=team", "lua.relay/score=5 plugin.x/list=team"} {
		_, eff := handle(t, s, req)
		if got := eff.Notes["lua.t/seen"]; got != want {
			t.Errorf("call %d: ctx.notes %q, want %q", i, got, want)
		}
	}
	if req.Notes["plugin.x/list"] != "team" {
		t.Errorf("the request's notes changed: %v", req.Notes)
	}
	_, eff := handle(t, s, request(sdk.StageRcpt))
	if got := eff.Notes["lua.t/seen"]; got != "" {
		t.Errorf("no notes: ctx.notes %q, want an empty table", got)
	}
}

// TestCtxAfterCall checks that the ctx of a finished call, and what it
// gave (conn, txn, msg), fail when a script kept them for a later call on
// the same state, which reuses the call's memory.
func TestCtxAfterCall(t *testing.T) {
	tests := []struct{ keep, use, want string }{
		{"saved = ctx", "saved.stage", "ctx of a finished call"},
		{"saved = ctx", "saved.txn", "ctx of a finished call"},
		{"saved = ctx", `saved:note("k", "v")`, "ctx of a finished call"},
		{"saved, note = ctx, ctx.note", `note(saved, "k", "v")`, "ctx:note: ctx of a finished call"},
		{"saved = ctx.txn", "saved.rcpt", "ctx.txn of a finished call"},
		{"saved = ctx.conn", "saved.ip", "ctx.conn of a finished call"},
		{"saved = ctx.txn", "saved.sender", "ctx.txn of a finished call"},
		{"saved = ctx.msg", `saved:header("Subject")`, "the message of a finished call"},
	}
	for _, tt := range tests {
		s := load(t, `
function on_data(ctx) `+tt.keep+` end
function on_rcpt(ctx) return gw.reject(550, "5.7.1", tostring(`+tt.use+`)) end
`, lua.Options{Pool: 1})
		handle(t, s, request(sdk.StageData))
		_, _, err := s.Handle(context.Background(), request(sdk.StageRcpt))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s, then %s: %v, want %q", tt.keep, tt.use, err, tt.want)
		}
	}
}

// TestCtxValuesPerCall checks that what a call read (and state.call put
// first) is the call's own: one state serves calls with other
// recipients, sessions and stages, and each reads its own, twice alike.
func TestCtxValuesPerCall(t *testing.T) {
	s := load(t, `
local function text(ctx)
  local txn = ctx.txn
  local rcpt = txn and txn.rcpt
  return tostring(rcpt) .. "," .. tostring(txn and txn.rcpt) .. "," .. ctx.conn.helo .. "," ..
    ctx.conn.helo .. "," .. ctx.stage .. "," .. tostring(txn and txn.sender) .. "," .. tostring(ctx.msg)
end
function on_rcpt(ctx) return gw.reject(550, "5.7.1", text(ctx)) end
function on_connect(ctx) return gw.reject(550, "5.7.1", text(ctx)) end
function on_data(ctx) return gw.reject(550, "5.7.1", text(ctx)) end
`, lua.Options{Pool: 1})
	rcpt := func(local, helo string) *hook.Request {
		req := request(sdk.StageRcpt)
		req.Rcpt.Address.Local, req.Session.HELO = local, helo
		return req
	}
	for _, tc := range []struct {
		req  *hook.Request
		want string
	}{
		{rcpt("a", "one.example"), "a@dest.example,a@dest.example,one.example,one.example,rcpt,bob@sender.example,nil"},
		{rcpt("b", "two.example"), "b@dest.example,b@dest.example,two.example,two.example,rcpt,bob@sender.example,nil"},
		{request(sdk.StageConnect), "nil,nil,client.example,client.example,connect,nil,nil"},
		{request(sdk.StageData), "nil,nil,client.example,client.example,data,bob@sender.example,gw.msg"},
		{rcpt("c", "three.example"), "c@dest.example,c@dest.example,three.example,three.example,rcpt,bob@sender.example,nil"},
	} {
		d, _ := handle(t, s, tc.req)
		if d.Message != tc.want {
			t.Errorf("%s: %q; want %q", tc.req.Stage, d.Message, tc.want)
		}
	}
}

func TestEffects(t *testing.T) {
	msg := testMessage()
	tests := []struct {
		name  string
		stage sdk.Stage
		body  string
		want  sdk.Effects
	}{
		{"set_recipients", sdk.StageRcpt, `ctx:set_recipients({"a@x.example", "b@y.example"})`,
			sdk.Effects{Recipients: []sdk.Address{{Local: "a", Domain: "x.example"}, {Local: "b", Domain: "y.example"}}}},
		{"set_sender", sdk.StageMail, `ctx:set_sender("srs0=x@fwd.example")`,
			sdk.Effects{Sender: &sdk.Address{Local: "srs0=x", Domain: "fwd.example"}}},
		{"set_sender null", sdk.StagePredelivery, `ctx:set_sender("")`, sdk.Effects{Sender: &sdk.Address{}}},
		{"set_route", sdk.StagePredelivery, `ctx:set_route{transport = "lmtp", via = "127.0.0.1:24"}`,
			sdk.Effects{Route: &sdk.Route{Transport: "lmtp", Via: "127.0.0.1:24"}}},
		{"set_route empty", sdk.StagePredelivery, `ctx:set_route{transport = "", via = ""}`,
			sdk.Effects{Route: &sdk.Route{}}},
		{"reply_lines", sdk.StageCommand, `ctx:reply_lines({"Alice <alice@x.example>", "<bob@x.example>"})`,
			sdk.Effects{ReplyLines: []string{"Alice <alice@x.example>", "<bob@x.example>"}}},
		{"skip and note", sdk.StageHelo, `ctx:skip("lua.other", "plugin.x"); ctx:note("score", 5); ctx:note("why", "rule")`,
			sdk.Effects{Skip: []string{"lua.other", "plugin.x"}, Notes: map[string]string{"lua.t/score": "5", "lua.t/why": "rule"}}},
		{"headers", sdk.StageData, `
			local m = ctx.msg
			m:add_header("X-Spam", "no")
			m:remove_header("Received")
			m:set_header("Subject", "[tag] " .. m:header("subject"))`,
			sdk.Effects{
				AddHeaders:    []sdk.HeaderField{{Name: "X-Spam", Value: "no"}, {Name: "Subject", Value: "[tag] hello"}},
				RemoveHeaders: []string{"Received", "Subject"},
			}},
		{"set_body", sdk.StageData, `ctx.msg:set_body("new\nbody\r\n")`,
			sdk.Effects{Body: []byte("From: Bob <bob@sender.example>\r\nTo: r1@dest.example\r\nReceived: from a\r\nreceived: from b\r\nSubject: hello\r\n\r\nnew\r\nbody\r\n")}},
		{"set_body with header edit", sdk.StagePredelivery, `ctx.msg:set_body(""); ctx.msg:add_header("X-T", "1")`,
			sdk.Effects{
				Body:       []byte("From: Bob <bob@sender.example>\r\nTo: r1@dest.example\r\nReceived: from a\r\nreceived: from b\r\nSubject: hello\r\n\r\n"),
				AddHeaders: []sdk.HeaderField{{Name: "X-T", Value: "1"}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, fmt.Sprintf("function on_%s(ctx)\n%s\nreturn gw.reject()\nend", tt.stage, tt.body))
			req := request(tt.stage)
			if req.Message != nil {
				req.Message = msg
			}
			d, eff := handle(t, s, req)
			if d.Verdict != sdk.Reject {
				t.Errorf("verdict = %v, want reject (effects ride along with any verdict)", d.Verdict)
			}
			if diff := cmp.Diff(tt.want, eff); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEffectErrors(t *testing.T) {
	tests := []struct {
		name  string
		stage sdk.Stage
		body  string
		want  string // substring of the error
	}{
		{"bad recipient", sdk.StageRcpt, `ctx:set_recipients({"ok@x.example", "not an address"})`, `t.lua:2: ctx:set_recipients: bad address "not an address"`},
		{"empty recipients", sdk.StageRcpt, `ctx:set_recipients({})`, "empty list (use gw.drop() to drop the recipient)"},
		{"recipient not a string", sdk.StageRcpt, `ctx:set_recipients({1})`, "entry 1 is a number, want a string"},
		{"reply line with CRLF", sdk.StageCommand, `ctx:reply_lines({"a\r\n250 b"})`, "line 1 is longer than 510 bytes or has CR, LF or NUL"},
		{"header value with LF", sdk.StageData, `ctx.msg:add_header("X-A", "a\nb")`, "msg:add_header: value has CR, LF or NUL"},
		{"header name with colon", sdk.StageData, `ctx.msg:add_header("X-A:", "a")`, `msg:add_header: bad header field name "X-A:"`},
		{"note key too long", sdk.StageRcpt, `ctx:note(string.rep("k", 195), "v")`, "ctx:note: key must be 1-194 bytes and value at most 4096"},
		{"empty note key", sdk.StageRcpt, `ctx:note("", "v")`, "ctx:note: key must be 1-194 bytes"},
		{"route via with space", sdk.StagePredelivery, `ctx:set_route{via = "a b"}`, `ctx:set_route: bad via "a b"`},
		{"method called with a dot", sdk.StageMail, `ctx.set_sender("a@x.example")`, "ctx:set_sender: call it as a method"},
		{"msg method called with a dot", sdk.StageData, `ctx.msg.header("From")`, "msg:header: call it as a method"},
		{"msg is read-only", sdk.StageData, `ctx.msg.x = 1`, "msg is read-only"},
		{"verdict is read-only", sdk.StageData, `local v = gw.accept(); v.code = 1`, "a verdict is read-only"},
		{"metatable is protected", sdk.StageData, `setmetatable(ctx.msg, {})`, "cannot change a protected metatable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, fmt.Sprintf("function on_%s(ctx)\n%s\nend", tt.stage, tt.body))
			_, eff, err := s.Handle(context.Background(), request(tt.stage))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to contain %q", err, tt.want)
			}
			if !eff.IsZero() {
				t.Errorf("effects after an error = %+v, want none", eff)
			}
		})
	}
}

func TestMessage(t *testing.T) {
	s := load(t, `
function on_data(ctx)
  local m = ctx.msg
  local body, cut = m:body()
  local again = m:body()
  ctx:note("from", m:header("FROM"))
  ctx:note("missing", tostring(m:header("X-None")))
  ctx:note("received", table.concat(m:headers("Received"), "|"))
  ctx:note("none", #m:headers("X-None"))
  ctx:note("names", table.concat(m:header_names(), ","))
  ctx:note("size", m:size())
  ctx:note("body", body)
  ctx:note("cut", cut)
  ctx:note("same", body == again)
  ctx:note("tostring", tostring(m))
end
`, lua.Options{BodyLimit: 10})
	msg := testMessage()
	req := request(sdk.StageData)
	req.Message = msg
	_, eff := handle(t, s, req)
	want := map[string]string{
		"lua.t/from":     "Bob <bob@sender.example>",
		"lua.t/missing":  "nil",
		"lua.t/received": "from a|from b",
		"lua.t/none":     "0",
		"lua.t/names":    "From,To,Received,received,Subject",
		"lua.t/size":     fmt.Sprint(msg.Size()),
		"lua.t/body":     "line 1\r\nli",
		"lua.t/cut":      "true",
		"lua.t/same":     "true",
		"lua.t/tostring": "gw.msg",
	}
	if diff := cmp.Diff(want, eff.Notes); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if n := msg.bodyCalls.Load(); n != 1 {
		t.Errorf("Body called %d times, want 1 (cached per call)", n)
	}

	t.Run("short body not cut", func(t *testing.T) {
		s := load(t, `function on_data(ctx) local b, cut = ctx.msg:body() ctx:note("cut", cut) ctx:note("len", #b) end`)
		_, eff := handle(t, s, request(sdk.StageData))
		if eff.Notes["lua.t/cut"] != "false" || eff.Notes["lua.t/len"] != "16" {
			t.Errorf("notes = %v", eff.Notes)
		}
	})
	t.Run("read error", func(t *testing.T) {
		s := load(t, "function on_data(ctx)\n  ctx.msg:header('From')\nend")
		req := request(sdk.StageData)
		req.Message = &fakeMessage{err: errors.New("disk on fire")}
		_, _, err := s.Handle(context.Background(), req)
		if err == nil || err.Error() != "lua.t: on_data: t.lua:2: msg:header: disk on fire" {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("panic in the view", func(t *testing.T) {
		s := load(t, "function on_data(ctx)\n  ctx.msg:header('From')\nend", lua.Options{Pool: 1})
		req := request(sdk.StageData)
		req.Message = &fakeMessage{panicHeader: true}
		_, _, err := s.Handle(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), "fake message: header exploded") {
			t.Errorf("error = %v, want the panic as an error", err)
		}
		// The script still works (on a new state).
		req.Message = testMessage()
		if _, _, err := s.Handle(context.Background(), req); err != nil {
			t.Errorf("after a panic: %v", err)
		}
	})
}

func TestTimeout(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{"loop", "function on_rcpt(ctx) while true do end end"},
		{"loop in pcall", "function on_rcpt(ctx) while true do pcall(function() while true do end end) end end"},
		{"tail calls", "local function f(n) return f(n + 1) end\nfunction on_rcpt(ctx) return f(1) end"},
		{"coroutine", "function on_rcpt(ctx) coroutine.wrap(function() while true do end end)() end"},
		{"string building", "function on_rcpt(ctx) local s = '' while true do s = s .. 'x' if #s > 1e5 then s = '' end end end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t, tt.src, lua.Options{Pool: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, _, err := s.Handle(ctx, request(sdk.StageRcpt))
			if took := time.Since(start); took > time.Second {
				t.Errorf("Handle took %v, want about 50ms", took)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want context.DeadlineExceeded", err)
			}
			if s.StatesAlive() != 0 {
				t.Errorf("%d states alive after a timeout, want 0 (discarded)", s.StatesAlive())
			}
		})
	}
	t.Run("cancelled before the call", func(t *testing.T) {
		s := load(t, "function on_rcpt(ctx) return gw.accept() end")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := s.Handle(ctx, request(sdk.StageRcpt))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
	})
}

// TestPool runs 50 concurrent calls on a pool of 4.
func TestPool(t *testing.T) {
	s := load(t, `
local lookup = { ["u0@dest.example"] = "zero" }
function on_rcpt(ctx)
  local x = 0
  for i = 1, 20000 do x = x + i end   -- take a little time
  local r = ctx.txn.rcpt
  return gw.reject(550, "5.1.1", (lookup[r] or "") .. r)
end
`, lua.Options{Pool: 4})
	var wg sync.WaitGroup
	errs := make(chan string, 50)
	var peak atomic.Int64
	for i := range 50 {
		wg.Go(func() {
			req := request(sdk.StageRcpt)
			req.Rcpt.Address.Local = fmt.Sprintf("u%d", i)
			want := req.Rcpt.Address.String()
			if i == 0 {
				want = "zero" + want
			}
			d, _, err := s.Handle(context.Background(), req)
			if n := int64(s.StatesAlive()); n > peak.Load() {
				peak.Store(n)
			}
			if err != nil || d.Message != want {
				errs <- fmt.Sprintf("call %d: %q, %v; want %q", i, d.Message, err, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := s.StatesCreated(); n > 4 {
		t.Errorf("%d states created, want at most 4", n)
	}
	if p := peak.Load(); p > 4 {
		t.Errorf("%d states alive at once, want at most 4", p)
	}
}

func TestStateDiscardedAfterError(t *testing.T) {
	s := load(t, `
calls = 0
function on_rcpt(ctx)
  calls = calls + 1
  if ctx.txn.rcpt == "fail@dest.example" then error("asked to") end
  return gw.reject(550, "5.7.1", tostring(calls))
end
`, lua.Options{Pool: 1})
	ok := request(sdk.StageRcpt)
	fail := request(sdk.StageRcpt)
	fail.Rcpt.Address.Local = "fail"
	steps := []struct {
		req     *hook.Request
		want    string // message, or "error"
		created int64
	}{
		{ok, "1", 1}, // the state of Load is reused
		{ok, "2", 1},
		{fail, "error", 1},
		{ok, "1", 2}, // a fresh state: the globals start over
		{ok, "2", 2},
	}
	for i, st := range steps {
		d, _, err := s.Handle(context.Background(), st.req)
		got := d.Message
		if err != nil {
			got = "error"
		}
		if got != st.want || s.StatesCreated() != st.created {
			t.Errorf("step %d: got %q with %d states created; want %q with %d", i, got, s.StatesCreated(), st.want, st.created)
		}
	}
}

func TestClose(t *testing.T) {
	s, err := lua.Load(lua.Options{Name: "t", Source: "function on_rcpt(ctx) return gw.accept() end"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, _, err := s.Handle(context.Background(), request(sdk.StageRcpt)); !errors.Is(err, lua.ErrClosed) {
		t.Errorf("Handle after Close = %v, want ErrClosed", err)
	}
	if s.StatesAlive() != 0 {
		t.Errorf("%d states alive after Close", s.StatesAlive())
	}
	s.Close() // idempotent
}

// BenchmarkHandleRcpt is the cost of a small rcpt policy call.
func BenchmarkHandleRcpt(b *testing.B) {
	s := load(b, `
local local_users = { ["alice@dest.example"] = true, ["bob@dest.example"] = true }
function on_rcpt(ctx)
  if local_users[ctx.txn.rcpt] then return gw.accept() end
  return gw.continue()
end
`)
	req := request(sdk.StageRcpt)
	req.Rcpt.Address.Local = "alice"
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		d, _, err := s.Handle(ctx, req)
		if err != nil || d.Verdict != sdk.Accept {
			b.Fatalf("Handle = %+v, %v", d, err)
		}
	}
}

// TestOffStageEffects: a setter at a stage that does not take its effect
// is not a script error; the chain drops the effect with a warning naming
// the handler, exactly as it does for a plugin (one effects model).
func TestOffStageEffects(t *testing.T) {
	tests := []struct {
		stage sdk.Stage
		body  string
	}{
		{sdk.StageMail, `ctx:set_recipients({"a@x.example"})`},
		{sdk.StageRcpt, `ctx:set_sender("a@x.example")`},
		{sdk.StageRcpt, `ctx:reply_lines({"x"})`},
		{sdk.StageRcpt, `ctx:set_route{via = "x.example:25"}`},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			s := load(t, fmt.Sprintf("function on_%s(ctx)\n%s\nend", tt.stage, tt.body))
			var logs strings.Builder
			chain := hook.NewChain(slog.New(slog.NewTextHandler(&logs, nil)), hook.Entry{Handler: s})
			res := chain.Dispatch(context.Background(), request(tt.stage))
			if res.Decision.Verdict != sdk.Continue {
				t.Errorf("verdict %v, want continue: the setter is no error", res.Decision.Verdict)
			}
			if res.Effects.Sender != nil || len(res.Effects.Recipients) > 0 || len(res.Effects.ReplyLines) > 0 || res.Effects.Route != nil {
				t.Errorf("effects %+v reached the caller; want them dropped", res.Effects)
			}
			if want := `level=WARN msg="hook gave effects its stage does not take; ignored" stage=` + string(tt.stage) + ` hook=lua.t`; !strings.Contains(logs.String(), want) {
				t.Errorf("log:\n%s\nwant a line containing %s", logs.String(), want)
			}
		})
	}
}

// BenchmarkHandleWork is a call that concatenates, matches and replaces
// in a loop: the host's .. and pattern functions at work.
func BenchmarkHandleWork(b *testing.B) {
	s := load(b, `
function on_rcpt(ctx)
  local n = 0
  for i = 1, 200 do
    local key = "rate/" .. ctx.txn.rcpt .. "/" .. i
    local l, d = string.match(key, "^rate/(.*)@([^/]*)/")
    if d then n = n + #l end
    key = key:gsub("%d", "x")
  end
  return gw.accept()
end
`)
	req := request(sdk.StageRcpt)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Handle(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerdictsKeptAcrossCalls checks that a verdict made at the top level
// and returned by every call, and one made and changed in each call, stay
// what they were over more calls than a block of the state's slab holds
// (a guard for any reuse of what earlier calls made).
func TestVerdictsKeptAcrossCalls(t *testing.T) {
	s := load(t, `
local ACCEPT = gw.accept(250, "2.1.5", "kept")
local made = {}
function on_rcpt(ctx)
  return ACCEPT
end
function on_mail(ctx)
  local v = gw.reject(550, "5.7.1", "call " .. (#made + 1)):reason("r" .. (#made + 1))
  made[#made + 1] = v
  return made[1]
end
`, lua.Options{Pool: 1})
	for i := range 100 {
		d, _ := handle(t, s, request(sdk.StageRcpt))
		if d.Verdict != sdk.Accept || d.Code != 250 || d.Message != "kept" {
			t.Fatalf("rcpt call %d: %+v; want the top level's accept", i+1, d)
		}
		d, _ = handle(t, s, request(sdk.StageMail))
		if d.Verdict != sdk.Reject || d.Message != "call 1" || d.Reason != "r1" {
			t.Fatalf("mail call %d: %+v; want the first call's reject", i+1, d)
		}
	}
}

// TestHookFunctionsFromTopLevel checks that a state calls the on_*
// functions its top level defined: assigning others (or nil) in a call
// changes nothing, in that state or another.
func TestHookFunctionsFromTopLevel(t *testing.T) {
	s := load(t, `
calls = 0
function on_rcpt(ctx)
  calls = calls + 1
  on_rcpt = function() return gw.reject(550, "5.7.1", "replaced") end
  on_data = nil
  return gw.reject(550, "5.7.1", "top level " .. calls)
end
function on_data(ctx) return gw.reject(554, "5.7.1", "data") end
`, lua.Options{Pool: 1})
	for i, want := range []string{"top level 1", "data", "top level 2", "data"} {
		stage := sdk.StageRcpt
		if i%2 == 1 {
			stage = sdk.StageData
		}
		if d, _ := handle(t, s, request(stage)); d.Message != want {
			t.Errorf("call %d (%s): %q, want %q", i, stage, d.Message, want)
		}
	}
}
