package lua

import (
	"math"
	"strings"

	glua "github.com/yuin/gopher-lua"
)

// A piece of a string at least this long that is less than half of it
// is copied (string.sub, captures), so that it does not keep the whole
// alive unseen by the memory account.
const copyPieceOf = 4 << 10

// stringLib puts the state's string functions into the string table:
// each charges the bytes it makes before making them, and the pattern
// functions look at the call's deadline as they search (patlib.go).
// orig gives gopher-lua's functions that are wrapped.
func (st *state) stringLib(str *glua.LTable, orig func(lib, name string) glua.LGFunction) {
	L := st.L
	fns := map[string]glua.LGFunction{
		"rep":     st.strRep,
		"sub":     st.strSub,
		"char":    st.strChar,
		"byte":    st.strByte,
		"format":  st.strFormat(orig("string", "format")),
		"upper":   st.charged("string.upper", 3, orig("string", "upper")),
		"lower":   st.charged("string.lower", 3, orig("string", "lower")),
		"reverse": st.charged("string.reverse", 1, orig("string", "reverse")),
		"find":    st.strFind,
		"match":   st.strMatch,
		"gmatch":  st.strGmatch,
		"gsub":    st.strGsub,
	}
	for name, fn := range fns {
		str.RawSetString(name, L.NewFunction(fn))
	}
	str.RawSetString("dump", glua.LNil)
}

// charged wraps a function of a string (argument 1) whose result is at
// most times its length (upper and lower: 3, a byte that is not UTF-8
// becoming U+FFFD).
func (st *state) charged(what string, times int, orig glua.LGFunction) glua.LGFunction {
	return func(L *glua.LState) int {
		st.charge(L, what, stringBytes+times*len(L.CheckString(1)))
		return orig(L)
	}
}

// strRep is string.rep(s, n).
func (st *state) strRep(L *glua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(glua.LString(""))
		return 1
	}
	if n > math.MaxInt/2/len(s) {
		L.RaiseError("string.rep: a result of %d bytes and more is too long", math.MaxInt/2)
	}
	size := n * len(s)
	st.charge(L, "string.rep", stringBytes+size)
	t := newText(size)
	t.add(s)
	t.repeat(size)
	L.Push(glua.LString(t.String()))
	return 1
}

// posrelat is Lua 5.1's: a negative position counts from the end.
func posrelat(pos, n int) int {
	if pos < 0 {
		pos += n + 1
	}
	return max(pos, 0)
}

// strSub is string.sub(s, i[, j]) as in Lua 5.1.
func (st *state) strSub(L *glua.LState) int {
	s := L.CheckString(1)
	i := max(posrelat(L.CheckInt(2), len(s)), 1)
	j := min(posrelat(L.OptInt(3, -1), len(s)), len(s))
	if i > j {
		L.Push(glua.LString(""))
		return 1
	}
	L.Push(st.piece(L, s, i-1, j))
	return 1
}

// piece is s[i:j] as a Lua string; see copyPieceOf.
func (st *state) piece(L *glua.LState, s string, i, j int) glua.LString {
	if len(s) >= copyPieceOf && j-i < len(s)/2 {
		st.charge(L, "string", stringBytes+j-i)
		t := newText(j - i)
		t.add(s[i:j])
		return glua.LString(t.String())
	}
	return glua.LString(s[i:j])
}

// strChar is string.char(...).
func (st *state) strChar(L *glua.LState) int {
	n := L.GetTop()
	st.charge(L, "string.char", stringBytes+n)
	b := make([]byte, n)
	for i := range b {
		c := L.CheckInt(i + 1)
		if c < 0 || c > 255 {
			L.ArgError(i+1, "invalid value")
		}
		b[i] = byte(c)
	}
	L.Push(glua.LString(b))
	return 1
}

// strByte is string.byte(s[, i[, j]]) as in Lua 5.1; the values it
// returns are charged as the table they often fill ({s:byte(1, -1)}).
func (st *state) strByte(L *glua.LState) int {
	s := L.CheckString(1)
	i := posrelat(L.OptInt(2, 1), len(s))
	j := min(posrelat(L.OptInt(3, i), len(s)), len(s))
	if i = max(i, 1); i > j {
		return 0
	}
	n := j - i + 1
	if n > L.Options.RegistryMaxSize {
		L.RaiseError("string.byte: string slice too long")
	}
	st.charge(L, "string.byte", n*(arrayBytes+numberBytes))
	for k := i - 1; k < j; k++ {
		L.Push(glua.LNumber(s[k]))
	}
	return n
}

// strFormat wraps string.format: it refuses a width or a precision of more
// than two digits (as C Lua 5.1 does), so padding cannot make huge
// strings, and charges at most twice the format and its string arguments
// (%q escapes) and a few dozen bytes for each other argument.
func (st *state) strFormat(orig glua.LGFunction) glua.LGFunction {
	return func(L *glua.LState) int {
		f := L.CheckString(1)
		if formatTooWide(f) {
			L.RaiseError("string.format: invalid format (width or precision too long)")
		}
		total := len(f)
		for i := 2; i <= L.GetTop(); i++ {
			if s, ok := L.Get(i).(glua.LString); ok {
				total += len(s)
			} else {
				total += 128
			}
		}
		st.charge(L, "string.format", stringBytes+2*total)
		return orig(L)
	}
}

// formatTooWide reports whether a directive of f has a width or a
// precision of more than two digits.
func formatTooWide(f string) bool {
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
			return true
		}
	}
	return false
}
