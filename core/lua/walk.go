package lua

import (
	"context"
	"fmt"
	"unsafe"

	glua "github.com/yuin/gopher-lua"
)

// Estimates, in bytes, of what gopher-lua's values take (measured with
// runtime.MemStats on tables, closures and strings made in loops, and
// rounded up).
const (
	tableBytes    = 128 // an empty table
	arrayBytes    = 32  // a slot of a table's array part, with its growth slack
	hashBytes     = 192 // a field of a table's hash part (three Go maps and a slice share it)
	functionBytes = 128 // a closure, plus upvalueBytes per upvalue
	upvalueBytes  = 48
	userdataBytes = 64
	numberBytes   = 8  // a number in an interface
	stringBytes   = 16 // a string's header, plus its length
	frameBytes    = 96 // a call frame

	// Strings this long or longer are counted once however many places
	// hold them; shorter ones are counted at each place.
	sharedString = 128

	walkCheckEvery = 1 << 12 // values measured between looks at the deadline
)

// threadOptions are the options of the states coroutines run in: a value
// stack of threadRegistryMax slots at most and a call stack that grows as
// needed, so that a coroutine can be counted at its largest.
const (
	threadRegistry     = 256
	threadRegistryMax  = 8 << 10
	threadRegistryGrow = 1 << 10
	threadBytes        = threadRegistryMax*slotBytes + callStackSize*frameBytes
)

// walker adds up what a state can reach.
type walker struct {
	seen    map[glua.LValue]struct{} // tables, functions, userdata and threads counted
	strings map[*byte]struct{}       // shared strings counted
	todo    []glua.LValue            // objects counted whose contents are not yet
	bytes   int64
	steps   int
}

// errWalkStop carries a context's error out of a table's ForEach.
type errWalkStop struct{ err error }

// measure returns an estimate of the bytes the state holds: its value
// stack (counted at its largest), what its globals, its registry and the
// string metatable reach, and the locals and functions of the frames of
// the running coroutines. Garbage is not counted. It gives up with
// ctx.Err() when ctx is done.
//
// What it cannot see is not counted: the extra arguments of a running
// vararg function (...), what only a coroutine that has not started yet
// holds (its function's upvalues), and the frames below a function that
// has made hundreds of tail calls (gopher-lua's GetStack answers for each
// such call with the bottom frame).
func (st *state) measure(ctx context.Context) (n int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			stop, ok := r.(errWalkStop)
			if !ok {
				panic(r)
			}
			n, err = 0, stop.err
		}
	}()
	L := st.L
	w := &walker{seen: map[glua.LValue]struct{}{}, strings: map[*byte]struct{}{}}
	w.bytes = int64(L.Options.RegistryMaxSize*slotBytes + callStackSize*frameBytes)
	for _, v := range []glua.LValue{L.G.Global, L.G.Registry, L.Env, L.GetMetatable(glua.LString(""))} {
		w.value(v)
	}
	w.seen[L] = struct{}{}
	w.frames(ctx, L)
	for th := L.G.CurrentThread; th != nil && th != L; th = th.Parent {
		w.value(th)
	}
	for len(w.todo) > 0 {
		v := w.todo[len(w.todo)-1]
		w.todo = w.todo[:len(w.todo)-1]
		w.contents(ctx, v)
	}
	return w.bytes, nil
}

func (w *walker) step(ctx context.Context) {
	if w.steps++; w.steps%walkCheckEvery == 0 {
		if err := ctx.Err(); err != nil {
			panic(errWalkStop{fmt.Errorf("measuring the state's memory: %w", err)})
		}
	}
}

// value counts v: a number or a string at once, an object (table,
// function, userdata, thread) the first time it is seen, its contents
// later.
func (w *walker) value(v glua.LValue) {
	switch v := v.(type) {
	case nil, *glua.LNilType, glua.LBool:
		return
	case glua.LNumber:
		w.bytes += numberBytes
		return
	case glua.LString:
		if len(v) >= sharedString {
			p := unsafe.StringData(string(v))
			if _, ok := w.strings[p]; ok {
				return
			}
			w.strings[p] = struct{}{}
		}
		w.bytes += stringBytes + int64(len(v))
		return
	}
	if _, ok := w.seen[v]; ok {
		return
	}
	w.seen[v] = struct{}{}
	w.todo = append(w.todo, v)
}

// contents counts an object and what it holds.
func (w *walker) contents(ctx context.Context, v glua.LValue) {
	w.step(ctx)
	switch v := v.(type) {
	case *glua.LTable:
		w.table(ctx, v)
	case *glua.LFunction:
		w.bytes += functionBytes + upvalueBytes*int64(len(v.Upvalues))
		w.value(v.Env)
		for _, uv := range v.Upvalues {
			if uv != nil {
				w.value(uv.Value())
			}
		}
	case *glua.LUserData:
		w.bytes += userdataBytes
		w.value(v.Env)
		w.value(v.Metatable)
	case *glua.LState:
		w.bytes += threadBytes
		w.value(v.Env)
		w.frames(ctx, v)
	}
}

// table counts t, its array part and its hash part, and what its keys,
// values and metatable hold.
func (w *walker) table(ctx context.Context, t *glua.LTable) {
	array, entries := int64(t.Len()), int64(0)
	t.ForEach(func(k, v glua.LValue) {
		w.step(ctx)
		entries++
		if _, ok := k.(glua.LNumber); !ok {
			w.value(k)
		}
		w.value(v)
	})
	w.bytes += tableBytes + arrayBytes*min(array, entries) + hashBytes*max(0, entries-array)
	w.value(t.Metatable)
}

// maxLevels bounds the levels of a call stack frames walks: a call stack
// has callStackSize frames at most, and a frame that made tail calls
// answers for as many levels more.
const maxLevels = 4 * callStackSize

// frames counts the function and the locals (temporaries included) of
// every frame of th's call stack.
func (w *walker) frames(ctx context.Context, th *glua.LState) {
	for level := 0; level < maxLevels; level++ {
		dbg, ok := th.GetStack(level)
		if !ok {
			return
		}
		w.step(ctx)
		if fn, err := th.GetInfo("f", dbg, glua.LNil); err == nil {
			w.value(fn)
		}
		for i := 1; ; i++ {
			name, v := th.GetLocal(dbg, i)
			if name == "" {
				break
			}
			w.value(v)
		}
	}
}
