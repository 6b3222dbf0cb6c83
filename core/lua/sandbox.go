package lua

import (
	"fmt"
	"strconv"
	"strings"

	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/pm"
)

// removedBase are base functions a script may not use: they load code or
// files, reach the collector or swap function environments.
var removedBase = []string{
	"dofile", "loadfile", "load", "loadstring", "require", "module",
	"collectgarbage", "getfenv", "setfenv", "_printregs", "newproxy",
}

// sandbox opens base (minus removedBase), table, string (string.dump
// removed; rep, gsub, format and table.concat bounded by maxString), math,
// coroutine and an os table of time, date and clock. There is no io,
// package, debug or channel library.
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

	fullOS, ok := L.GetGlobal("os").(*glua.LTable)
	if !ok {
		return fmt.Errorf("no os library")
	}
	safeOS := L.NewTable()
	for _, name := range []string{"time", "date", "clock"} {
		safeOS.RawSetString(name, fullOS.RawGetString(name))
	}
	L.SetGlobal("os", safeOS)

	str, ok := L.GetGlobal("string").(*glua.LTable)
	if !ok {
		return fmt.Errorf("no string library")
	}
	str.RawSetString("dump", glua.LNil)
	str.RawSetString("rep", L.NewFunction(st.strRep))
	str.RawSetString("gsub", L.NewFunction(st.strGsub))
	format, ok := str.RawGetString("format").(*glua.LFunction)
	if !ok || format.GFunction == nil {
		return fmt.Errorf("no string.format")
	}
	str.RawSetString("format", L.NewFunction(st.strFormat(format.GFunction)))

	tab, ok := L.GetGlobal("table").(*glua.LTable)
	if !ok {
		return fmt.Errorf("no table library")
	}
	concat, ok := tab.RawGetString("concat").(*glua.LFunction)
	if !ok || concat.GFunction == nil {
		return fmt.Errorf("no table.concat")
	}
	tab.RawSetString("concat", L.NewFunction(st.tabConcat(concat.GFunction)))
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

func (st *state) tooLong(L *glua.LState, fn string, n int) {
	L.RaiseError("%s: result of %d bytes exceeds the limit of %d", fn, n, st.maxString)
}

// strRep is string.rep(s, n) with the result bounded.
func (st *state) strRep(L *glua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(glua.LString(""))
		return 1
	}
	if n > st.maxString/len(s) {
		st.tooLong(L, "string.rep", len(s)*min(n, 1<<40/len(s)))
	}
	L.Push(glua.LString(strings.Repeat(s, n)))
	return 1
}

// strFormat wraps string.format, refusing width and precision of more than
// two digits (as C Lua 5.1 does), so padding cannot make huge strings.
func (st *state) strFormat(orig glua.LGFunction) glua.LGFunction {
	return func(L *glua.LState) int {
		f := L.CheckString(1)
		for i := 0; i < len(f); i++ {
			if f[i] != '%' {
				continue
			}
			i++
			if i < len(f) && f[i] == '%' {
				continue
			}
			for i < len(f) && strings.IndexByte("-+ #0", f[i]) >= 0 {
				i++
			}
			digits := 0
			for i < len(f) && f[i] >= '0' && f[i] <= '9' {
				i, digits = i+1, digits+1
			}
			if i < len(f) && f[i] == '.' {
				i++
				prec := 0
				for i < len(f) && f[i] >= '0' && f[i] <= '9' {
					i, prec = i+1, prec+1
				}
				digits = max(digits, prec)
			}
			if digits > 2 {
				L.RaiseError("string.format: invalid format (width or precision too long)")
			}
		}
		total := len(f)
		for i := 2; i <= L.GetTop(); i++ {
			if s, ok := L.Get(i).(glua.LString); ok {
				total += len(s)
			}
		}
		if total > st.maxString {
			st.tooLong(L, "string.format", total)
		}
		return orig(L)
	}
}

// tabConcat wraps table.concat with the result bounded.
func (st *state) tabConcat(orig glua.LGFunction) glua.LGFunction {
	return func(L *glua.LState) int {
		t := L.CheckTable(1)
		sep := len(L.OptString(2, ""))
		i := L.OptInt(3, 1)
		j := L.OptInt(4, t.Len())
		total := 0
		for k := i; k <= j; k++ {
			switch v := t.RawGetInt(k).(type) {
			case glua.LString:
				total += len(v) + sep
			case glua.LNumber:
				total += 24 + sep
			}
			if total > st.maxString {
				st.tooLong(L, "table.concat", total)
			}
		}
		return orig(L)
	}
}

// strGsub is string.gsub(s, pattern, repl[, n]) built in linear time (the
// gopher-lua version copies the whole string per match) with the result
// bounded as it grows.
func (st *state) strGsub(L *glua.LState) int {
	str := L.CheckString(1)
	pat := L.CheckString(2)
	L.CheckTypes(3, glua.LTString, glua.LTTable, glua.LTFunction)
	repl := L.Get(3)
	limit := L.OptInt(4, -1)
	mds, err := pm.Find(pat, []byte(str), 0, limit)
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	var b strings.Builder
	last := 0
	for _, m := range mds {
		start, end := m.Capture(0), m.Capture(1)
		b.WriteString(str[last:start])
		last = end
		whole := str[start:end]
		switch r := repl.(type) {
		case glua.LString:
			rs := string(r)
			for i := 0; i < len(rs); i++ {
				c := rs[i]
				if c != '%' || i+1 == len(rs) {
					b.WriteByte(c)
					continue
				}
				i++
				c = rs[i]
				if c < '0' || c > '9' {
					b.WriteByte(c)
					continue
				}
				b.WriteString(capture(L, m, str, int(c-'0')))
				if b.Len() > st.maxString {
					st.tooLong(L, "string.gsub", b.Len())
				}
			}
		case *glua.LTable:
			var key glua.LValue = glua.LString(whole)
			if m.CaptureLength() > 2 {
				key = captureValue(m, str, 1)
			}
			b.WriteString(replValue(L, L.GetTable(r, key), whole))
		case *glua.LFunction:
			L.Push(r)
			n := 0
			if m.CaptureLength() > 2 {
				for i := 1; 2*i < m.CaptureLength(); i++ {
					L.Push(captureValue(m, str, i))
					n++
				}
			} else {
				L.Push(glua.LString(whole))
				n = 1
			}
			L.Call(n, 1)
			v := L.Get(-1)
			L.Pop(1)
			b.WriteString(replValue(L, v, whole))
		}
		if b.Len() > st.maxString {
			st.tooLong(L, "string.gsub", b.Len())
		}
	}
	b.WriteString(str[last:])
	if b.Len() > st.maxString {
		st.tooLong(L, "string.gsub", b.Len())
	}
	L.Push(glua.LString(b.String()))
	L.Push(glua.LNumber(len(mds)))
	return 2
}

// replValue is the replacement for a table or function result: false or
// nil keep the match, strings and numbers replace it.
func replValue(L *glua.LState, v glua.LValue, whole string) string {
	switch v := v.(type) {
	case *glua.LNilType:
		return whole
	case glua.LBool:
		if !bool(v) {
			return whole
		}
	case glua.LString:
		return string(v)
	case glua.LNumber:
		return v.String()
	}
	L.RaiseError("invalid replacement value (a %s)", v.Type())
	return ""
}

// capture returns %i of a match: %0 is the whole match, %1 the first
// capture (or the whole match when there are no captures).
func capture(L *glua.LState, m *pm.MatchData, str string, i int) string {
	if i == 0 {
		return str[m.Capture(0):m.Capture(1)]
	}
	if m.CaptureLength() <= 2 && i == 1 {
		return str[m.Capture(0):m.Capture(1)]
	}
	if 2*i >= m.CaptureLength() {
		L.RaiseError("invalid capture index %%%d", i)
	}
	return captureValue(m, str, i).String()
}

// captureValue is capture i (1-based) as a Lua value: a position capture
// "()" is a number.
func captureValue(m *pm.MatchData, str string, i int) glua.LValue {
	if m.IsPosCapture(2 * i) {
		return glua.LNumber(m.Capture(2 * i))
	}
	return glua.LString(str[m.Capture(2*i):m.Capture(2*i+1)])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
