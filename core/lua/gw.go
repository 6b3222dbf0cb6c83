package lua

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"time"

	glua "github.com/yuin/gopher-lua"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

// defineGW sets the global gw.
func (st *state) defineGW() error {
	L := st.L
	gw := L.NewTable()
	fns := map[string]glua.LGFunction{
		"continue": st.verdictFn(sdk.Continue),
		"accept":   st.verdictFn(sdk.Accept),
		"reject":   st.verdictFn(sdk.Reject),
		"defer":    st.verdictFn(sdk.Defer),
		"drop":     st.verdictFn(sdk.Drop),
		"log":      st.gwLog,
		"time":     gwTime,
		"glob":     st.gwGlob,
	}
	for name, fn := range fns {
		gw.RawSetString(name, L.NewFunction(fn))
	}
	gw.RawSetString("dns", st.module(map[string]glua.LGFunction{
		"mx": st.dnsMX, "a": st.dnsA, "txt": st.dnsTXT, "ptr": st.dnsPTR,
	}))
	gw.RawSetString("addr", st.module(map[string]glua.LGFunction{
		"parse": addrParse, "domain": addrDomain, "localpart": addrLocal,
	}))
	gw.RawSetString("cidr", st.module(map[string]glua.LGFunction{
		"contains": st.cidrContains,
	}))
	durable := st.kvModule(hostsvc.Durable)
	gw.RawSetString("durable", durable)
	gw.RawSetString("kv", durable) // the name scripts used before there were two kinds
	gw.RawSetString("ephemeral", st.kvModule(hostsvc.Ephemeral))
	params, err := toLua(L, st.s.params)
	if err != nil {
		return fmt.Errorf("params: %w", err)
	}
	gw.RawSetString("params", params)
	L.SetGlobal("gw", gw)

	methods := L.NewTable()
	methods.RawSetString("reason", L.NewFunction(st.verdictReason))
	methods.RawSetString("disconnect", L.NewFunction(st.verdictDisconnect))
	st.verdictMeta = L.NewTable()
	st.verdictMeta.RawSetString("__index", L.NewFunction(func(L *glua.LState) int {
		d := st.checkVerdict(L, "verdict")
		key := L.CheckString(2)
		var v glua.LValue = glua.LNil
		switch key {
		case "verdict":
			v = glua.LString(d.Verdict.String())
		case "code":
			v = glua.LNumber(d.Code)
		case "enhanced":
			if !d.Enhanced.IsZero() {
				v = glua.LString(d.Enhanced.String())
			}
		case "text":
			v = glua.LString(d.Message)
		default:
			v = methods.RawGetString(key)
		}
		L.Push(v)
		return 1
	}))
	st.verdictMeta.RawSetString("__newindex", L.NewFunction(func(L *glua.LState) int {
		L.RaiseError("a verdict is read-only; use v:reason(…) or v:disconnect()")
		return 0
	}))
	st.verdictMeta.RawSetString("__metatable", glua.LString("gw.verdict"))
	st.verdictMeta.RawSetString("__tostring", L.NewFunction(func(L *glua.LState) int {
		d := st.checkVerdict(L, "tostring")
		s := "gw." + d.Verdict.String()
		if d.Code != 0 || !d.Enhanced.IsZero() || d.Message != "" {
			s += fmt.Sprintf("(%d %s %s)", d.Code, d.Enhanced, d.Message)
		}
		L.Push(glua.LString(s))
		return 1
	}))
	return nil
}

func (st *state) module(fns map[string]glua.LGFunction) *glua.LTable {
	t := st.L.CreateTable(0, len(fns))
	for name, fn := range fns {
		t.RawSetString(name, st.L.NewFunction(fn))
	}
	return t
}

// ---- verdicts ----

// verdict is what a verdict constructor makes: the userdata the script
// holds and the decision it carries (its Value), in one allocation.
type verdict struct {
	ud glua.LUserData
	d  sdk.Decision
}

func (st *state) verdictFn(v sdk.Verdict) glua.LGFunction {
	name := "gw." + v.String()
	return func(L *glua.LState) int {
		vd := &verdict{d: sdk.Decision{Verdict: v}}
		d := &vd.d
		switch v {
		case sdk.Continue:
		case sdk.Drop:
			d.Reason = optString(L, name, 1)
		default:
			if c := L.Get(1); c != glua.LNil {
				n, ok := c.(glua.LNumber)
				if !ok || float64(n) != math.Trunc(float64(n)) || n < 0 || n > 999 {
					L.ArgError(1, name+": code must be an integer from 0 to 999")
				}
				d.Code = int(n)
			}
			if e := optString(L, name, 2); e != "" {
				enh, err := sdk.ParseEnhancedCode(e)
				if err != nil {
					L.ArgError(2, fmt.Sprintf("%s: bad enhanced status code %q", name, truncate(e, 40)))
				}
				d.Enhanced = enh
			}
			d.Message = optString(L, name, 3)
			d.Reason = optString(L, name, 4)
		}
		vd.ud = glua.LUserData{Value: d, Env: L.Env, Metatable: st.verdictMeta} // as L.NewUserData makes it
		L.Push(&vd.ud)
		return 1
	}
}

func optString(L *glua.LState, fn string, n int) string {
	switch v := L.Get(n).(type) {
	case *glua.LNilType:
		return ""
	case glua.LString:
		return string(v)
	default:
		L.ArgError(n, fmt.Sprintf("%s: a %s, want a string", fn, v.Type()))
		return ""
	}
}

func (st *state) checkVerdict(L *glua.LState, what string) *sdk.Decision {
	if ud, ok := L.Get(1).(*glua.LUserData); ok && ud.Metatable == st.verdictMeta {
		return ud.Value.(*sdk.Decision)
	}
	L.RaiseError("%s: not a gw verdict (call it as a method, v:%s(…))", what, what)
	return nil
}

func (st *state) verdictReason(L *glua.LState) int {
	d := st.checkVerdict(L, "reason")
	d.Reason = L.CheckString(2)
	L.SetTop(1)
	return 1
}

func (st *state) verdictDisconnect(L *glua.LState) int {
	d := st.checkVerdict(L, "disconnect")
	d.Disconnect = true
	L.SetTop(1)
	return 1
}

// ---- logging, time, glob ----

func (st *state) gwLog(L *glua.LState) int {
	level, msg := L.CheckString(1), L.CheckString(2)
	ctx := st.ctx()
	var fields, attrs []slog.Attr
	if st.s.host.LogEnabled(ctx, level) {
		fields = logFields(L, 3)
		if st.cur != nil {
			attrs = append(attrs, slog.String("stage", string(st.cur.req.Stage)))
			if s := st.cur.req.Session; s != nil {
				attrs = append(attrs, slog.String("session", s.ID))
			}
		}
	}
	if err := st.s.host.Log(ctx, level, msg, fields, attrs...); err != nil {
		L.RaiseError("gw.log: %v", err)
	}
	return 0
}

// maxLogTable bounds how much of a fields table gw.log reads (the host
// keeps sdk.LogMaxFields of them).
const maxLogTable = 1024

// logFields converts the table at n, if any, to log fields: string keys
// only; strings, numbers and booleans keep their type.
func logFields(L *glua.LState, n int) []slog.Attr {
	t, ok := L.Get(n).(*glua.LTable)
	if !ok {
		return nil
	}
	var fields []slog.Attr
	t.ForEach(func(k, v glua.LValue) {
		ks, ok := k.(glua.LString)
		if !ok || len(fields) >= maxLogTable {
			return
		}
		switch v := v.(type) {
		case glua.LString:
			fields = append(fields, slog.String(string(ks), string(v)))
		case glua.LNumber:
			fields = append(fields, slog.Float64(string(ks), float64(v)))
		case glua.LBool:
			fields = append(fields, slog.Bool(string(ks), bool(v)))
		default:
			fields = append(fields, slog.String(string(ks), L.ToStringMeta(v).String()))
		}
	})
	return fields
}

func gwTime(L *glua.LState) int {
	L.Push(glua.LNumber(float64(time.Now().UnixNano()) / 1e9))
	return 1
}

// gwGlob is gw.glob(pattern, s); the search looks at the call's deadline
// every few thousand steps.
func (st *state) gwGlob(L *glua.LState) int {
	pattern, s := L.CheckString(1), L.CheckString(2)
	st.charge(L, "gw.glob", 3*(len(pattern)+len(s)))
	steps := 0
	L.Push(glua.LBool(glob(strings.ToLower(pattern), strings.ToLower(s), func() {
		st.tick(L, "gw.glob", &steps)
	})))
	return 1
}

// glob matches s against pattern, where * is any run of bytes and ? one
// byte, with one backtrack point: at most len(pattern) steps per byte of
// s, each a call of step.
func glob(pattern, s string, step func()) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		step()
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p, i = p+1, i+1
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p, mark = star+1, mark+1
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// ---- addresses and CIDRs ----

func addrParse(L *glua.LState) int {
	a, err := envelope.ParseAddress(L.CheckString(1))
	if err != nil {
		L.Push(glua.LNil)
		L.Push(glua.LString(err.Error()))
		return 2
	}
	t := L.CreateTable(0, 2)
	t.RawSetString("local", glua.LString(a.Local))
	t.RawSetString("domain", glua.LString(a.Domain))
	L.Push(t)
	return 1
}

func addrDomain(L *glua.LState) int {
	if a, err := envelope.ParseAddress(L.CheckString(1)); err == nil && a.Domain != "" {
		L.Push(glua.LString(a.Domain))
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

func addrLocal(L *glua.LState) int {
	if a, err := envelope.ParseAddress(L.CheckString(1)); err == nil && !a.IsNull() {
		L.Push(glua.LString(a.Local))
	} else {
		L.Push(glua.LNil)
	}
	return 1
}

// prefix parses a CIDR or a bare IP, caching per state. A bad one raises an
// error: it is a mistake in the script or its params.
func (st *state) prefix(L *glua.LState, s string) netip.Prefix {
	if p, ok := st.prefixes[s]; ok {
		return p
	}
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
		p = p.Masked()
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		L.RaiseError("gw.cidr.contains: bad CIDR %q", truncate(s, 60))
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if st.prefixes == nil || len(st.prefixes) >= 4096 {
		st.prefixes = make(map[string]netip.Prefix)
	}
	st.prefixes[s] = p
	return p
}

func (st *state) cidrContains(L *glua.LState) int {
	ip, err := netip.ParseAddr(L.CheckString(2))
	if err != nil {
		L.Push(glua.LFalse)
		return 1
	}
	ip = ip.Unmap().WithZone("")
	found := false
	switch v := L.Get(1).(type) {
	case glua.LString:
		found = st.prefix(L, string(v)).Contains(ip)
	case *glua.LTable:
		steps := 0
		for i, n := 1, v.Len(); i <= n && !found; i++ {
			st.tick(L, "gw.cidr.contains", &steps)
			s, ok := v.RawGetInt(i).(glua.LString)
			if !ok {
				L.RaiseError("gw.cidr.contains: entry %d is a %s, want a string", i, v.RawGetInt(i).Type())
			}
			found = st.prefix(L, string(s)).Contains(ip)
		}
	default:
		L.ArgError(1, "gw.cidr.contains: want a CIDR string or an array of them")
	}
	L.Push(glua.LBool(found))
	return 1
}

// ---- DNS ----

// dnsError pushes nil, the error text and whether it is temporary.
func dnsError(L *glua.LState, err error) int {
	L.Push(glua.LNil)
	L.Push(glua.LString(err.Error()))
	L.Push(glua.LBool(resolver.IsTemporary(err)))
	return 3
}

func (st *state) dnsMX(L *glua.LState) int {
	mxs, err := st.s.host.LookupMX(st.ctx(), L.CheckString(1))
	if err != nil {
		return dnsError(L, err)
	}
	t := L.CreateTable(len(mxs), 0)
	for _, mx := range mxs {
		e := L.CreateTable(0, 2)
		e.RawSetString("host", glua.LString(mx.Host))
		e.RawSetString("pref", glua.LNumber(mx.Preference))
		t.Append(e)
	}
	L.Push(t)
	return 1
}

func (st *state) dnsA(L *glua.LState) int {
	ips, err := st.s.host.LookupIP(st.ctx(), L.CheckString(1))
	if err != nil {
		return dnsError(L, err)
	}
	L.Push(stringsTable(L, ips))
	return 1
}

func (st *state) dnsTXT(L *glua.LState) int {
	txts, err := st.s.host.LookupTXT(st.ctx(), L.CheckString(1))
	if err != nil {
		return dnsError(L, err)
	}
	L.Push(stringsTable(L, txts))
	return 1
}

func (st *state) dnsPTR(L *glua.LState) int {
	names, err := st.s.host.LookupPTR(st.ctx(), L.CheckString(1))
	if err != nil {
		return dnsError(L, err)
	}
	L.Push(stringsTable(L, names))
	return 1
}

func stringsTable(L *glua.LState, ss []string) *glua.LTable {
	t := L.CreateTable(len(ss), 0)
	for _, s := range ss {
		t.Append(glua.LString(s))
	}
	return t
}

// ---- key-value stores ----

// kvModule is gw.durable or gw.ephemeral: the script's view of the store
// of kind k. Errors of the store (a bad key, a full disk) raise.
func (st *state) kvModule(k hostsvc.Kind) *glua.LTable {
	kv := st.s.host.KV(k)
	name := "gw." + k.String() + "."
	return st.module(map[string]glua.LGFunction{
		"get":    func(L *glua.LState) int { return st.kvGet(L, kv, name+"get") },
		"set":    func(L *glua.LState) int { return st.kvSet(L, kv, name+"set") },
		"incr":   func(L *glua.LState) int { return st.kvIncr(L, kv, name+"incr") },
		"delete": func(L *glua.LState) int { return st.kvDelete(L, kv, name+"delete") },
	})
}

// ttlArg reads an optional ttl in seconds. Out-of-range values reach the
// host services, which refuse them as they refuse a plugin's.
func ttlArg(L *glua.LState, fn string, n int) time.Duration {
	switch v := L.Get(n).(type) {
	case *glua.LNilType:
		return 0
	case glua.LNumber:
		f := float64(v)
		switch {
		case math.IsNaN(f):
			L.ArgError(n, fn+": ttl is not a number")
		case f < 0:
			return -time.Second
		case f >= float64(math.MaxInt64)/float64(time.Second):
			return math.MaxInt64
		}
		return time.Duration(f * float64(time.Second))
	default:
		L.ArgError(n, fmt.Sprintf("%s: ttl is a %s, want seconds", fn, v.Type()))
	}
	return 0
}

func (st *state) kvGet(L *glua.LState, kv hostsvc.KV, fn string) int {
	v, ok, err := kv.Get(st.ctx(), L.CheckString(1))
	if err != nil {
		L.RaiseError("%s: %v", fn, err)
	}
	if !ok {
		L.Push(glua.LNil)
		return 1
	}
	L.Push(glua.LString(v))
	return 1
}

func (st *state) kvSet(L *glua.LState, kv hostsvc.KV, fn string) int {
	key := L.CheckString(1)
	var val string
	switch v := L.CheckAny(2).(type) {
	case glua.LString:
		val = string(v)
	case glua.LNumber, glua.LBool:
		val = v.String()
	default:
		L.ArgError(2, fmt.Sprintf("%s: value is a %s, want a string, number or boolean", fn, v.Type()))
	}
	if err := kv.Set(st.ctx(), key, val, ttlArg(L, fn, 3)); err != nil {
		L.RaiseError("%s: %v", fn, err)
	}
	return 0
}

func (st *state) kvIncr(L *glua.LState, kv hostsvc.KV, fn string) int {
	key := L.CheckString(1)
	delta := int64(1)
	if v := L.Get(2); v != glua.LNil {
		n, ok := v.(glua.LNumber)
		if !ok || float64(n) != math.Trunc(float64(n)) || math.Abs(float64(n)) > 1<<53 {
			L.ArgError(2, fn+": delta must be an integer")
		}
		delta = int64(n)
	}
	n, err := kv.Incr(st.ctx(), key, delta, ttlArg(L, fn, 3))
	if err != nil {
		L.RaiseError("%s: %v", fn, err)
	}
	L.Push(glua.LNumber(n))
	return 1
}

func (st *state) kvDelete(L *glua.LState, kv hostsvc.KV, fn string) int {
	if err := kv.Delete(st.ctx(), L.CheckString(1)); err != nil {
		L.RaiseError("%s: %v", fn, err)
	}
	return 0
}
