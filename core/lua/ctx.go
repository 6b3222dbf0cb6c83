package lua

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	glua "github.com/yuin/gopher-lua"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// call is one on_<stage> call: what the ctx object reads and the effects its
// setters record. A state has one, which each of its calls reuses: the ctx
// (and ctx.conn, ctx.txn, ctx.msg) of an earlier call, which a script may
// have kept, points to it too, and is told apart by identity (owns).
type call struct {
	st  *state
	ctx context.Context
	req *hook.Request
	msg hook.Message
	eff sdk.Effects
	m   meter           // the call's meter (state.m)
	ud  *glua.LUserData // the ctx of the call; nil between calls

	sess                 *hook.Session
	connUD, txnUD, msgUD *glua.LUserData // built on first access
	ip, rcpt             glua.LValue
	rcpts, params, notes *glua.LTable
	header               []sdk.HeaderField
	body                 glua.LValue
	bodyCut              bool
	auth                 *glua.LTable
}

// defineCtx builds the metatables of ctx, ctx.conn, ctx.txn and ctx.msg
// and the ctx methods.
//
// What ctx, ctx.conn and ctx.txn give is read from a table of the state
// (their __index), without a call to Go: the methods, what state.begin
// puts there first (txn, rcpt, msg) and every field read once in the call
// (kept by the Go __index of that table, ctxIndex, connIndex, txnIndex).
// gopher-lua's call of a Go __index costs a call frame and a string
// boxed for the key, a few hundred nanoseconds each time. When the call
// ends, its fields are cleared and its userdata get the metatable of a
// finished call, which fails every use: a ctx a script kept for a later
// call never reads that call's fields.
func (st *state) defineCtx() {
	L := st.L
	st.ctxFields = L.NewTable()
	for name, fn := range map[string]glua.LGFunction{
		"set_recipients": st.ctxSetRecipients,
		"set_sender":     st.ctxSetSender,
		"set_route":      st.ctxSetRoute,
		"reply_lines":    st.ctxReplyLines,
		"skip":           st.ctxSkip,
		"note":           st.ctxNote,
	} {
		st.ctxFields.RawSetString(name, L.NewFunction(fn))
	}
	st.connFields, st.txnFields = L.NewTable(), L.NewTable()
	st.ctxMeta, st.ctxDead = st.readOnlyMeta("ctx", st.ctxFields, st.ctxIndex)
	st.connMeta, st.connDead = st.readOnlyMeta("ctx.conn", st.connFields, st.connIndex)
	st.txnMeta, st.txnDead = st.readOnlyMeta("ctx.txn", st.txnFields, st.txnIndex)
	st.defineMsg()
}

// keep puts v in fields (ctx's, ctx.conn's or ctx.txn's) under key for
// the rest of the call; nil is not kept (asked again, it is worked out
// again).
func (st *state) keep(fields *glua.LTable, key string, v glua.LValue) {
	if v == glua.LNil {
		return
	}
	fields.RawSetString(key, v)
	st.kept = append(st.kept, keptField{fields, key})
}

// keptField is a field state.keep put in a table, cleared when the call ends.
type keptField struct {
	fields *glua.LTable
	key    string
}

// newUD makes a userdata of the call with the metatable meta.
func (c *call) newUD(L *glua.LState, meta *glua.LTable) *glua.LUserData {
	ud := L.NewUserData()
	ud.Value, ud.Metatable = c, meta
	return ud
}

// begin makes the call's ctx and puts first what a call of its stage
// most often reads: ctx.txn.rcpt with a recipient (rcpt, predelivery),
// ctx.msg with a message (data, predelivery). The rest is kept at its
// first read. The userdata are made in one allocation.
func (st *state) begin(L *glua.LState, c *call) {
	req := c.req
	withTxn := req.Envelope != nil && req.Rcpt != nil
	withMsg := c.msg != nil && (req.Stage == sdk.StageData || req.Stage == sdk.StagePredelivery)
	n := 1
	if withTxn {
		n++
	}
	if withMsg {
		n++
	}
	uds := make([]glua.LUserData, 0, n)
	ud := func(meta *glua.LTable) *glua.LUserData {
		uds = append(uds, glua.LUserData{Value: c, Env: L.Env, Metatable: meta}) // as L.NewUserData makes it
		return &uds[len(uds)-1]
	}
	c.ud = ud(st.ctxMeta)
	if withTxn {
		c.txnUD = ud(st.txnMeta)
		st.keep(st.ctxFields, "txn", c.txnUD)
		c.rcpt = glua.LString(req.Rcpt.Address.String())
		st.keep(st.txnFields, "rcpt", c.rcpt)
	}
	if withMsg {
		c.msgUD = ud(st.msgMeta)
		st.keep(st.ctxFields, "msg", c.msgUD)
	}
}

// end clears what the call kept and gives its ctx, ctx.conn and ctx.txn
// the metatables of a finished call.
func (st *state) end(c *call) {
	for i, f := range st.kept {
		f.fields.RawSetString(f.key, glua.LNil)
		st.kept[i] = keptField{}
	}
	st.kept = st.kept[:0]
	for _, u := range []struct {
		ud   *glua.LUserData
		dead *glua.LTable
	}{{c.ud, st.ctxDead}, {c.connUD, st.connDead}, {c.txnUD, st.txnDead}} {
		if u.ud != nil {
			u.ud.Metatable = u.dead
		}
	}
}

// ctxCall returns the live call of the ctx at argument 1.
func (st *state) ctxCall(L *glua.LState, what string) *call {
	if ud, ok := L.Get(1).(*glua.LUserData); ok {
		switch ud.Metatable {
		case st.ctxMeta:
			if c := ud.Value.(*call); c.owns(ud) {
				return c
			}
			fallthrough
		case st.ctxDead:
			L.RaiseError("%s: ctx of a finished call", what)
		}
	}
	L.RaiseError("%s: call it as a method, ctx:%s(…)", what, strings.TrimPrefix(what, "ctx:"))
	return nil
}

// liveCall is the call in progress, for the __index of ctx's, ctx.conn's
// and ctx.txn's fields (a finished call's userdata do not reach them).
func (st *state) liveCall(L *glua.LState, what string) *call {
	if st.cur == nil {
		L.RaiseError("%s of a finished call", what)
	}
	return st.cur
}

// ctxIndex is the __index of ctx's fields: what the table does not have
// yet.
func (st *state) ctxIndex(L *glua.LState) int {
	c := st.liveCall(L, "ctx: ctx")
	key := L.CheckString(2)
	req := c.req
	var v glua.LValue = glua.LNil
	switch key {
	case "stage":
		v = glua.LString(req.Stage)
	case "conn":
		if c.connUD == nil {
			c.connUD = c.newUD(L, st.connMeta)
		}
		v = c.connUD
	case "txn":
		if req.Envelope != nil {
			if c.txnUD == nil {
				c.txnUD = c.newUD(L, st.txnMeta)
			}
			v = c.txnUD
		}
	case "command":
		if req.Stage == sdk.StageCommand {
			v = glua.LString(req.Command)
		}
	case "arg":
		if req.Arg != "" || req.Stage == sdk.StageCommand || req.Stage == sdk.StageAuth {
			v = glua.LString(req.Arg)
		}
	case "notes":
		if c.notes == nil {
			c.notes = L.CreateTable(0, len(req.Notes))
			for k, v := range req.Notes {
				c.notes.RawSetString(k, glua.LString(v))
			}
		}
		v = c.notes
	case "auth":
		if req.Auth != nil {
			if c.auth == nil {
				c.auth = authTable(L, req.Auth)
			}
			v = c.auth
		}
	case "msg":
		if c.msg != nil && (req.Stage == sdk.StageData || req.Stage == sdk.StagePredelivery) {
			if c.msgUD == nil {
				c.msgUD = c.newUD(L, st.msgMeta)
			}
			v = c.msgUD
		}
	default:
		L.Push(glua.LNil) // not a field: not kept
		return 1
	}
	st.keep(st.ctxFields, key, v)
	L.Push(v)
	return 1
}

// authTable is ctx.auth: the checks of inbound mail as plain tables,
// spf {result, domain}, dkim a list of {result, domain, selector}, dmarc
// {result, policy, domain}, arc {result}.
func authTable(L *glua.LState, a *sdk.AuthResults) *glua.LTable {
	t := L.CreateTable(0, 4)
	t.RawSetString("spf", strTable(L, "result", a.SPF.Result, "domain", a.SPF.Domain))
	dkim := L.CreateTable(len(a.DKIM), 0)
	for _, d := range a.DKIM {
		dkim.Append(strTable(L, "result", d.Result, "domain", d.Domain, "selector", d.Selector))
	}
	t.RawSetString("dkim", dkim)
	t.RawSetString("dmarc", strTable(L, "result", a.DMARC.Result, "policy", a.DMARC.Policy, "domain", a.DMARC.Domain))
	t.RawSetString("arc", strTable(L, "result", a.ARC.Result))
	return t
}

// strTable is a table of string fields from key, value pairs.
func strTable(L *glua.LState, kv ...string) *glua.LTable {
	t := L.CreateTable(0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		t.RawSetString(kv[i], glua.LString(kv[i+1]))
	}
	return t
}

// session returns the connection facts. Requests from the queue
// (predelivery, delivered, deferred, bounced) have no session: their conn
// has the client facts the envelope recorded (ip, helo, tls, auth_user)
// and empty id, listener and port.
func (c *call) session() *hook.Session {
	if c.sess == nil {
		c.sess = c.req.Session
		if c.sess == nil {
			s := &hook.Session{}
			if env := c.req.Envelope; env != nil {
				s.ClientIP, _ = netip.ParseAddr(env.ClientIP)
				s.HELO, s.TLS, s.AuthUser = env.ClientHELO, env.TLS, env.AuthUser
			}
			c.sess = s
		}
	}
	return c.sess
}

// connIndex is the __index of ctx.conn's fields (ctx.conn is a read-only
// userdata).
func (st *state) connIndex(L *glua.LState) int {
	c := st.liveCall(L, "ctx.conn")
	s := c.session()
	key := L.CheckString(2)
	var v glua.LValue = glua.LNil
	switch key {
	case "id":
		v = glua.LString(s.ID)
	case "listener":
		v = glua.LString(s.Listener)
	case "ip":
		if c.ip == nil {
			c.ip = glua.LString("")
			if s.ClientIP.IsValid() {
				c.ip = glua.LString(s.ClientIP.Unmap().String())
			}
		}
		v = c.ip
	case "port":
		v = glua.LNumber(s.Port)
	case "helo":
		v = glua.LString(s.HELO)
	case "esmtp":
		v = glua.LBool(s.ESMTP)
	case "tls":
		v = glua.LBool(s.TLS)
	case "auth_user":
		v = glua.LString(s.AuthUser)
	}
	st.keep(st.connFields, key, v)
	L.Push(v)
	return 1
}

// txnIndex is the __index of ctx.txn's fields (ctx.txn is a read-only
// userdata): its tables (recipients, params, notify) are built on first
// use, and notify anew at each (it is not kept).
func (st *state) txnIndex(L *glua.LState) int {
	c := st.liveCall(L, "ctx.txn")
	req, env := c.req, c.req.Envelope
	key := L.CheckString(2)
	var v glua.LValue = glua.LNil
	switch key {
	case "sender":
		v = glua.LString(env.Sender.String())
	case "recipients":
		if c.rcpts == nil {
			c.rcpts = L.CreateTable(len(env.Recipients), 0)
			for _, r := range env.Recipients {
				c.rcpts.Append(glua.LString(r.Address.String()))
			}
		}
		v = c.rcpts
	case "params":
		if c.params == nil {
			c.params = L.CreateTable(0, 8)
			c.params.RawSetString("ret", glua.LString(env.Ret))
			c.params.RawSetString("envid", glua.LString(env.EnvID))
			c.params.RawSetString("smtputf8", glua.LBool(env.SMTPUTF8))
			c.params.RawSetString("body", glua.LString(env.Body))
			c.params.RawSetString("size", glua.LNumber(env.Size))
			c.params.RawSetString("auth", glua.LString(env.Auth))
			c.params.RawSetString("requiretls", glua.LBool(env.RequireTLS))
			c.params.RawSetString("tls_optional", glua.LBool(env.TLSOptional))
		}
		v = c.params
	case "rcpt":
		if req.Rcpt != nil {
			if c.rcpt == nil {
				c.rcpt = glua.LString(req.Rcpt.Address.String())
			}
			v = c.rcpt
		}
	case "notify":
		if req.Rcpt != nil {
			t := L.NewTable()
			for _, name := range req.Rcpt.Notify.Names() {
				t.Append(glua.LString(name))
			}
			L.Push(t)
			return 1
		}
	case "orcpt":
		if req.Rcpt != nil && req.Rcpt.ORCPT != "" {
			v = glua.LString(req.Rcpt.ORCPT)
		}
	}
	st.keep(st.txnFields, key, v)
	L.Push(v)
	return 1
}

// owns reports whether ud is the ctx, ctx.conn, ctx.txn or ctx.msg of the
// call in progress.
func (c *call) owns(ud *glua.LUserData) bool {
	return ud != nil && (ud == c.ud || ud == c.connUD || ud == c.txnUD || ud == c.msgUD)
}

// readOnlyMeta makes the metatables of a read-only userdata named name:
// the live one reads fields, which looks up what it lacks with index; the
// finished one fails every read.
func (st *state) readOnlyMeta(name string, fields *glua.LTable, index glua.LGFunction) (live, finished *glua.LTable) {
	L := st.L
	lookup := L.NewTable()
	lookup.RawSetString("__index", L.NewFunction(index))
	L.SetMetatable(fields, lookup)
	meta := func(index glua.LValue) *glua.LTable {
		mt := L.NewTable()
		mt.RawSetString("__index", index)
		mt.RawSetString("__newindex", L.NewFunction(func(L *glua.LState) int {
			L.RaiseError("%s is read-only", name)
			return 0
		}))
		mt.RawSetString("__metatable", glua.LString("gw."+name))
		mt.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
			L.Push(glua.LString("gw." + name))
			return 1
		}))
		return mt
	}
	finishedMsg := name + " of a finished call"
	if name == "ctx" {
		finishedMsg = "ctx: ctx of a finished call"
	}
	return meta(fields), meta(L.NewFunction(func(L *glua.LState) int {
		L.RaiseError("%s", finishedMsg)
		return 0
	}))
}

// checkAddress parses a mailbox given to a setter; "" is the null path
// when allowNull.
func checkAddress(L *glua.LState, what, s string, allowNull bool) sdk.Address {
	if s == "" && allowNull {
		return sdk.Address{}
	}
	a, err := envelope.ParseAddress(s)
	if err != nil || a.IsNull() {
		L.RaiseError("%s: bad address %q", what, truncate(s, 200))
	}
	return sdk.Address{Local: a.Local, Domain: a.Domain}
}

// stringList reads argument n as an array of strings.
func stringList(L *glua.LState, what string, n int) []string {
	t := L.CheckTable(n)
	l := t.Len()
	if l > maxList {
		L.RaiseError("%s: more than %d entries", what, maxList)
	}
	out := make([]string, 0, l)
	for i := 1; i <= l; i++ {
		s, ok := t.RawGetInt(i).(glua.LString)
		if !ok {
			L.RaiseError("%s: entry %d is a %s, want a string", what, i, t.RawGetInt(i).Type())
		}
		out = append(out, string(s))
	}
	return out
}

func (st *state) ctxSetRecipients(L *glua.LState) int {
	const what = "ctx:set_recipients"
	c := st.ctxCall(L, what)
	list := stringList(L, what, 2)
	if len(list) == 0 {
		L.RaiseError("%s: empty list (use gw.drop() to drop the recipient)", what)
	}
	rcpts := make([]sdk.Address, len(list))
	for i, s := range list {
		rcpts[i] = checkAddress(L, what, s, false)
	}
	c.eff.Recipients = rcpts
	return 0
}

func (st *state) ctxSetSender(L *glua.LState) int {
	const what = "ctx:set_sender"
	c := st.ctxCall(L, what)
	a := checkAddress(L, what, L.CheckString(2), true)
	c.eff.Sender = &a
	return 0
}

func (st *state) ctxSetRoute(L *glua.LState) int {
	const what = "ctx:set_route"
	c := st.ctxCall(L, what)
	t := L.CheckTable(2)
	var r sdk.Route
	for _, f := range []struct {
		key string
		dst *string
	}{{"transport", &r.Transport}, {"via", &r.Via}} {
		key, dst := f.key, f.dst
		switch v := t.RawGetString(key).(type) {
		case *glua.LNilType:
		case glua.LString:
			if strings.ContainsAny(string(v), "\r\n\x00 ") {
				L.RaiseError("%s: bad %s %q", what, key, truncate(string(v), 200))
			}
			*dst = string(v)
		default:
			L.RaiseError("%s: %s is a %s, want a string", what, key, v.Type())
		}
	}
	c.eff.Route = &r
	return 0
}

func (st *state) ctxReplyLines(L *glua.LState) int {
	const what = "ctx:reply_lines"
	c := st.ctxCall(L, what)
	lines := stringList(L, what, 2)
	for i, l := range lines {
		if len(l) > 510 || strings.ContainsAny(l, "\r\n\x00") {
			L.RaiseError("%s: line %d is longer than 510 bytes or has CR, LF or NUL", what, i+1)
		}
	}
	c.eff.ReplyLines = lines
	return 0
}

func (st *state) ctxSkip(L *glua.LState) int {
	const what = "ctx:skip"
	c := st.ctxCall(L, what)
	for i := 2; i <= L.GetTop(); i++ {
		name := L.CheckString(i)
		if len(c.eff.Skip) >= maxList {
			L.RaiseError("%s: more than %d names", what, maxList)
		}
		c.eff.Skip = append(c.eff.Skip, name)
	}
	return 0
}

func (st *state) ctxNote(L *glua.LState) int {
	const what = "ctx:note"
	c := st.ctxCall(L, what)
	key := L.CheckString(2)
	var val string
	switch v := L.CheckAny(3).(type) {
	case glua.LString:
		val = string(v)
	case glua.LNumber, glua.LBool:
		val = v.String()
	default:
		L.ArgError(3, fmt.Sprintf("%s: value is a %s, want a string, number or boolean", what, v.Type()))
	}
	key = st.s.name + "/" + key
	if len(key) == len(st.s.name)+1 || len(key) > hook.MaxNoteKey || len(val) > hook.MaxNoteValue {
		L.RaiseError("%s: key must be 1-%d bytes and value at most %d", what,
			hook.MaxNoteKey-len(st.s.name)-1, hook.MaxNoteValue)
	}
	if c.eff.Notes == nil {
		c.eff.Notes = make(map[string]string)
	}
	if _, ok := c.eff.Notes[key]; !ok && len(c.eff.Notes) >= hook.MaxNotes {
		L.RaiseError("%s: more than %d notes", what, hook.MaxNotes)
	}
	c.eff.Notes[key] = val
	return 0
}
