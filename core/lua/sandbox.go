package lua

import (
	"fmt"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// removedBase are base functions a script may not use: they load code or
// files, reach the collector or swap function environments.
var removedBase = []string{
	"dofile", "loadfile", "load", "loadstring", "require", "module",
	"collectgarbage", "getfenv", "setfenv", "_printregs", "newproxy",
}

// sandbox opens base (minus removedBase), table, string (without dump),
// math, coroutine and an os table of time, date and clock; there is no io,
// package, debug or channel library. The functions that can run long or
// make much (the string library's, table.concat and sort, unpack,
// coroutine.create and wrap, os.date) are replaced by the state's own,
// which look at the call's deadline and charge its memory (strlib.go,
// patlib.go, tablib.go).
func (st *state) sandbox() error {
	L := st.L
	for _, lib := range []struct {
		name string
		open glua.LGFunction
	}{
		{glua.BaseLibName, glua.OpenBase},
		{glua.TabLibName, glua.OpenTable},
		{glua.StringLibName, glua.OpenString},
		{glua.MathLibName, glua.OpenMath},
		{glua.CoroutineLibName, glua.OpenCoroutine},
		{glua.OsLibName, glua.OpenOs},
	} {
		if err := L.CallByParam(glua.P{Fn: L.NewFunction(lib.open), Protect: true}, glua.LString(lib.name)); err != nil {
			return err
		}
	}
	for _, name := range removedBase {
		L.SetGlobal(name, glua.LNil)
	}
	L.SetGlobal("print", L.NewFunction(st.print))
	libs := map[string]*glua.LTable{}
	for _, name := range []string{"string", "table", "coroutine", "os"} {
		t, ok := L.GetGlobal(name).(*glua.LTable)
		if !ok {
			return fmt.Errorf("no %s library", name)
		}
		libs[name] = t
	}
	orig := func(lib, name string) glua.LGFunction {
		if fn, ok := libs[lib].RawGetString(name).(*glua.LFunction); ok {
			return fn.GFunction
		}
		return nil
	}
	unpack, ok := L.GetGlobal("unpack").(*glua.LFunction)
	if !ok {
		return fmt.Errorf("no unpack")
	}
	L.SetGlobal("unpack", L.NewFunction(st.unpack(unpack.GFunction)))
	st.stringLib(libs["string"], orig)
	st.tableLib(libs["table"])
	if err := st.coroutineLib(libs["coroutine"], orig); err != nil {
		return err
	}
	safeOS := L.NewTable()
	safeOS.RawSetString("time", libs["os"].RawGetString("time"))
	safeOS.RawSetString("clock", libs["os"].RawGetString("clock"))
	safeOS.RawSetString("date", L.NewFunction(st.osDate(orig("os", "date"))))
	L.SetGlobal("os", safeOS)
	return nil
}

// print logs its arguments at debug level instead of writing to stdout.
func (st *state) print(L *glua.LState) int {
	var b strings.Builder
	for i := 1; i <= L.GetTop(); i++ {
		if i > 1 {
			b.WriteByte('\t')
		}
		b.WriteString(L.ToStringMeta(L.Get(i)).String())
		if b.Len() > 4096 {
			break
		}
	}
	st.s.log.Debug("lua print", "msg", truncate(b.String(), 4096))
	return 0
}

// osDate is os.date, its result charged: each directive of the format
// makes at most a few dozen bytes.
func (st *state) osDate(orig glua.LGFunction) glua.LGFunction {
	return func(L *glua.LState) int {
		st.charge(L, "os.date", 32*len(L.OptString(1, "")))
		return orig(L)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
