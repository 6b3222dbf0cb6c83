package lua

import (
	"fmt"

	glua "github.com/yuin/gopher-lua"
)

// coroutineLib replaces coroutine.create and coroutine.wrap: a coroutine
// runs under the call's meter (its instructions are charged and its
// deadline is the call's), in a state of threadOptions (a value stack of
// threadRegistryMax slots), charged at its largest, threadBytes.
func (st *state) coroutineLib(co *glua.LTable, orig func(lib, name string) glua.LGFunction) error {
	create, resume := orig("coroutine", "create"), orig("coroutine", "resume")
	if create == nil || resume == nil {
		return fmt.Errorf("no coroutine.create or resume")
	}
	L := st.L
	co.RawSetString("create", L.NewFunction(func(L *glua.LState) int {
		st.newThread(L, create)
		return 1
	}))
	co.RawSetString("wrap", L.NewFunction(func(L *glua.LState) int {
		th := st.newThread(L, create)
		L.Pop(1)
		L.Push(L.NewClosure(func(L *glua.LState) int { return wrapped(L, resume) }, th))
		return 1
	}))
	return nil
}

// newThread calls gopher-lua's coroutine.create (create) with the
// function at argument 1 and leaves the coroutine on the stack: made with
// threadOptions (create copies the options of L) and without the context
// of L (which would give it a context of its own), then given the call's
// meter.
func (st *state) newThread(L *glua.LState, create glua.LGFunction) *glua.LState {
	L.CheckFunction(1)
	st.charge(L, "coroutine.create", threadBytes)
	opts, ctx := L.Options, L.RemoveContext()
	defer func() {
		L.Options = opts
		if ctx != nil {
			L.SetContext(ctx)
		}
	}()
	L.Options.RegistrySize = threadRegistry
	L.Options.RegistryMaxSize = threadRegistryMax
	L.Options.RegistryGrowStep = threadRegistryGrow
	L.Options.MinimizeStackMemory = true
	create(L)
	th := L.CheckThread(L.GetTop())
	if ctx != nil {
		th.SetContext(ctx)
	}
	return th
}

// wrapped is the function coroutine.wrap returns: it resumes the
// coroutine (its upvalue) with its arguments and returns what the
// coroutine yields or returns, or raises its error.
func wrapped(L *glua.LState, resume glua.LGFunction) int {
	L.Insert(L.Get(glua.UpvalueIndex(1)), 1)
	n := resume(L)
	first := L.GetTop() - n + 1
	if !glua.LVAsBool(L.Get(first)) {
		L.Error(L.Get(first+1), 0)
	}
	L.Remove(first)
	return n - 1
}
