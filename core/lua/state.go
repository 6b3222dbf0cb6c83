package lua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	glua "github.com/yuin/gopher-lua"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// state is one Lua state of a Script's pool. It runs one call at a time.
type state struct {
	s       *Script
	L       *glua.LState
	cur     *call             // the call in progress; nil between calls
	funcs   []*glua.LFunction // funcs[i] is s.funcs[i] as the top level defined it, or nil
	calls   call              // what each call uses (cur), reset between calls
	initCtx context.Context   // while the top level runs in newState
	m       *meter            // the meter of the call (or top level) in progress
	waited  bool              // the call in progress used a host service or read the body: it may have waited
	acct    account           // the state's memory

	// ctx, ctx.conn and ctx.txn: their metatables while the call runs
	// and once it has ended, and the fields they read (defineCtx)
	ctxMeta, ctxDead, ctxFields    *glua.LTable
	connMeta, connDead, connFields *glua.LTable
	txnMeta, txnDead, txnFields    *glua.LTable
	kept                           []keptField // what the call in progress put in the fields
	msgMeta                        *glua.LTable
	verdictMeta                    *glua.LTable
	onError                        *glua.LFunction         // PCall message handler: records a short traceback
	trace                          string                  // the traceback of the last error
	prefixes                       map[string]netip.Prefix // gw.cidr parse cache
}

// newState makes a sandboxed state, defines the gw module and runs the
// chunk's top level under ctx.
func (s *Script) newState(ctx context.Context) (*state, error) {
	regMax := max(registryStart, s.maxMemory/slotBytes/registryShare)
	L := glua.NewState(glua.Options{
		SkipOpenLibs:    true,
		CallStackSize:   callStackSize,
		RegistrySize:    registryStart,
		RegistryMaxSize: regMax,
		// Growth is linear in gopher-lua: large steps keep a stack that
		// grows to the limit from copying quadratically.
		RegistryGrowStep: max(registryStart, regMax/16),
	})
	st := &state{s: s, L: L, initCtx: ctx, acct: account{max: int64(s.maxMemory)}}
	if err := st.sandbox(); err != nil {
		L.Close()
		return nil, fmt.Errorf("%s: sandbox: %w", s.name, err)
	}
	st.defineCtx()
	st.onError = L.NewFunction(st.traceback)
	if err := st.defineGW(); err != nil {
		L.Close()
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	st.m = newMeter(ctx, st)
	L.SetContext(st.m)
	err := st.runTop()
	L.RemoveContext()
	st.initCtx = nil
	if err != nil {
		L.Close()
		return nil, st.callError(st.m, "", err)
	}
	st.m = nil
	st.lookupFuncs()
	s.created.Add(1)
	return st, nil
}

// lookupFuncs finds the script's on_* functions (Script.funcs) among the
// globals the top level left, once: a call reads none of the globals
// table, the state's largest.
func (st *state) lookupFuncs() {
	st.funcs = make([]*glua.LFunction, len(st.s.funcs))
	for i, name := range st.s.funcs {
		st.funcs[i], _ = st.L.GetGlobal(name).(*glua.LFunction)
	}
}

// runTop runs the chunk's top level: the compiled chunk returns the
// script's body when given the concatenation function (wrapChunk).
func (st *state) runTop() error {
	L := st.L
	if err := st.pcall(L.NewFunctionFromProto(st.s.proto), 1, L.NewFunction(st.concat)); err != nil {
		return err
	}
	body, ok := L.Get(-1).(*glua.LFunction)
	L.Pop(1)
	if !ok {
		return errors.New("the compiled chunk did not return the script's body")
	}
	return st.pcall(body, 0)
}

// ctx returns the context of the call in progress (or of the top-level
// run), for a host service, which may wait on it: Handle then looks
// whether the call ended after its deadline.
func (st *state) ctx() context.Context {
	if st.cur != nil {
		st.waited = true
		return st.cur.ctx
	}
	if st.initCtx != nil {
		return st.initCtx
	}
	return context.Background()
}

// call runs the script's function i (on_<stage>) with the ctx of req
// and converts its result.
func (st *state) call(ctx context.Context, i int, req *hook.Request, msg hook.Message) (sdk.Decision, sdk.Effects, error) {
	L := st.L
	fn, name := st.funcs[i], st.s.funcs[i]
	if fn == nil {
		return sdk.Decision{}, sdk.Effects{}, nil // this state's top level did not define it
	}
	c := &st.calls // zero: the last call's end cleared it
	c.st, c.ctx, c.req, c.msg = st, ctx, req, msg
	c.m.Context, c.m.st = ctx, st
	st.waited = false
	st.begin(L, c)
	st.cur, st.m = c, &c.m
	defer func() {
		// The call is over: its userdata no longer pass owns nor reach
		// its fields, and it keeps nothing of the request.
		st.end(c)
		st.cur, st.m = nil, nil
		*c = call{}
	}()
	L.SetContext(st.m)
	err := st.pcall(fn, 1, c.ud)
	L.RemoveContext()
	m := st.m
	if err == nil && m.err != nil {
		err = m.err // the limit was reached after the last instruction
	}
	if err != nil {
		return sdk.Decision{}, sdk.Effects{}, st.callError(m, name, err)
	}
	ret := L.Get(-1)
	L.Pop(1)
	switch v := ret.(type) {
	case *glua.LNilType:
		return sdk.Decision{}, c.eff, nil
	case *glua.LUserData:
		if d, ok := v.Value.(*sdk.Decision); ok {
			return *d, c.eff, nil
		}
	}
	return sdk.Decision{}, sdk.Effects{}, &ScriptError{Hook: st.s.name, Func: name,
		Msg: fmt.Sprintf("%s:%d: %s returned a %s; want a gw verdict or nil",
			st.s.chunk, fn.Proto.LineDefined, name, ret.Type())}
}

// pcall calls fn in protected mode with the traceback handler. It also
// recovers what escapes gopher-lua's PCall (a registry overflow leaves no
// room to call the handler, and the handler's push panics).
func (st *state) pcall(fn *glua.LFunction, nret int, args ...glua.LValue) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if ae, ok := r.(*glua.ApiError); ok {
				err = ae
				return
			}
			err = &glua.ApiError{Type: glua.ApiErrorPanic, Object: glua.LString(fmt.Sprint(r))}
		}
	}()
	return st.L.CallByParam(glua.P{Fn: fn, NRet: nret, Protect: true, Handler: st.onError}, args...)
}

// callError turns a failed PCall into the error Handle returns: the
// memory limit's or the context's error if the meter has one, else a
// *ScriptError.
func (st *state) callError(m *meter, fn string, err error) error {
	if cerr := m.Err(); cerr != nil {
		where := fn
		if where == "" {
			where = "top level"
		}
		return fmt.Errorf("%s: %s: %w", st.s.name, where, cerr)
	}
	if fn == "" {
		fn = "top level"
	}
	se := &ScriptError{Hook: st.s.name, Func: fn, Msg: err.Error(), Trace: st.trace}
	st.trace = ""
	if ae, ok := errors.AsType[*glua.ApiError](err); ok {
		se.Msg = ae.Object.String()
		if ae.Type == glua.ApiErrorPanic {
			se.Msg = "panic in a host binding: " + se.Msg
		}
	}
	return se
}

// traceback is the message handler of every protected call. It records a
// short traceback and returns the error unchanged. (gopher-lua's own
// traceback lists every tail call ever made by the frame, which after a
// tail-recursive loop takes seconds to build.)
func (st *state) traceback(L *glua.LState) int {
	var b strings.Builder
	b.WriteString("stack traceback:")
	for level := 0; level < 16; level++ {
		dbg, ok := L.GetStack(level)
		if !ok {
			break
		}
		if _, err := L.GetInfo("Sl", dbg, glua.LNil); err != nil || dbg.CurrentLine <= 0 {
			continue
		}
		fmt.Fprintf(&b, "\n\t%s:%d", dbg.Source, dbg.CurrentLine)
	}
	st.trace = b.String()
	L.SetTop(1)
	return 1
}
