package lua

import (
	"context"
	"errors"
	"strings"

	glua "github.com/yuin/gopher-lua"

	"github.com/mailgate/gateway/core/lua/pattern"
)

// patternSpecials are the characters that make string.find search with a
// pattern rather than for the plain text.
const patternSpecials = "^$*+?.([%-"

// searchCtx is the context pattern searches look at: the call's meter,
// whose Err is the deadline's or the memory limit's.
func (st *state) searchCtx() context.Context {
	if st.m == nil {
		return context.Background()
	}
	return st.m
}

// compilePattern compiles argument n as a pattern or raises its error.
func compilePattern(L *glua.LState, n int, anchor bool) *pattern.Pattern {
	p, err := pattern.Compile(L.CheckString(n), anchor)
	if err != nil {
		L.RaiseError("%s", err.Error())
	}
	return p
}

// searchError raises the error of a search: a malformed pattern as Lua
// words it, else the deadline's or the memory limit's, after what.
func searchError(L *glua.LState, what string, err error) {
	if perr, ok := errors.AsType[*pattern.Error](err); ok {
		L.RaiseError("%s", perr.Msg)
	}
	L.RaiseError("%s: %v", what, err)
}

// strFind is string.find(s, pattern[, init[, plain]]) as in Lua 5.1.
func (st *state) strFind(L *glua.LState) int { return st.find(L, "string.find", true) }

// strMatch is string.match(s, pattern[, init]) as in Lua 5.1.
func (st *state) strMatch(L *glua.LState) int { return st.find(L, "string.match", false) }

func (st *state) find(L *glua.LState, what string, find bool) int {
	s, pat := L.CheckString(1), L.CheckString(2)
	init := min(posrelat(L.OptInt(3, 1), len(s)), len(s)+1) - 1
	init = max(init, 0)
	if find && (glua.LVAsBool(L.Get(4)) || !strings.ContainsAny(pat, patternSpecials)) {
		if i := strings.Index(s[init:], pat); i >= 0 {
			L.Push(glua.LNumber(init + i + 1))
			L.Push(glua.LNumber(init + i + len(pat)))
			return 2
		}
		L.Push(glua.LNil)
		return 1
	}
	p := compilePattern(L, 2, true)
	search := p.NewSearch(s)
	start, end, ok, err := search.Find(st.searchCtx(), init)
	if err != nil {
		searchError(L, what, err)
	}
	if !ok {
		L.Push(glua.LNil)
		return 1
	}
	if !find {
		return st.pushCaptures(L, s, search.Captures(start, end))
	}
	L.Push(glua.LNumber(start + 1))
	L.Push(glua.LNumber(end))
	if p.NumCaptures() == 0 {
		return 2
	}
	return 2 + st.pushCaptures(L, s, search.Captures(start, end))
}

// pushCaptures pushes the captures of a match: strings, or positions for
// "()".
func (st *state) pushCaptures(L *glua.LState, s string, cs []pattern.Capture) int {
	for _, c := range cs {
		L.Push(st.captureValue(L, s, c))
	}
	return len(cs)
}

func (st *state) captureValue(L *glua.LState, s string, c pattern.Capture) glua.LValue {
	if c.Position {
		return glua.LNumber(c.Start + 1)
	}
	return st.piece(L, s, c.Start, c.End)
}

// strGmatch is string.gmatch(s, pattern) as in Lua 5.1: the iterator
// finds one match a call, and a leading '^' is a plain character.
func (st *state) strGmatch(L *glua.LState) int {
	s := L.CheckString(1)
	search := compilePattern(L, 2, false).NewSearch(s)
	pos := 0
	L.Push(L.NewFunction(func(L *glua.LState) int {
		for ; pos <= len(s); pos++ {
			end, ok, err := search.At(st.searchCtx(), pos)
			if err != nil {
				searchError(L, "string.gmatch", err)
			}
			if ok {
				start := pos
				pos = end
				if end == start {
					pos++ // an empty match: go on one position further
				}
				return st.pushCaptures(L, s, search.Captures(start, end))
			}
		}
		return 0
	}))
	return 1
}

// builder is a text whose room is charged to the state each time it
// grows.
type builder struct {
	text
	st   *state
	what string
}

func (b *builder) add(L *glua.LState, s string) {
	if need := b.Len() + len(s); need > b.Cap() {
		size := max(need, 2*b.Cap(), 256)
		b.st.charge(L, b.what, size)
		b.grow(size - b.Len())
	}
	b.text.add(s)
}

// strGsub is string.gsub(s, pattern, repl[, n]) as in Lua 5.1, in linear
// time (gopher-lua's copies the whole string per match): repl a string
// (with %0-%9), a table or a function.
func (st *state) strGsub(L *glua.LState) int {
	src := L.CheckString(1)
	p := compilePattern(L, 2, true)
	L.CheckTypes(3, glua.LTString, glua.LTNumber, glua.LTTable, glua.LTFunction)
	maxN := L.OptInt(4, len(src)+1)
	search := p.NewSearch(src)
	b := &builder{st: st, what: "string.gsub"}
	n, si := 0, 0
loop:
	for n < maxN {
		end, ok, err := search.At(st.searchCtx(), si)
		if err != nil {
			searchError(L, "string.gsub", err)
		}
		if ok {
			n++
			st.addValue(L, b, src, search.Captures(si, end), si, end)
		}
		switch {
		case ok && end > si:
			si = end
		case si < len(src):
			b.add(L, src[si:si+1])
			si++
		default:
			break loop // the end of the subject
		}
		if p.Anchored() {
			break
		}
	}
	b.add(L, src[si:])
	L.Push(glua.LString(b.String()))
	L.Push(glua.LNumber(n))
	return 2
}

// addValue adds the replacement of the match src[start:end] with captures
// cs: repl (argument 3) expanded, or what the table or the function gives
// (false or nil keep the match).
func (st *state) addValue(L *glua.LState, b *builder, src string, cs []pattern.Capture, start, end int) {
	whole := src[start:end]
	var v glua.LValue
	switch repl := L.Get(3).(type) {
	case glua.LString, glua.LNumber:
		st.addRepl(L, b, glua.LVAsString(repl), src, cs, whole)
		return
	case *glua.LTable:
		v = L.GetTable(repl, st.captureValue(L, src, cs[0]))
	case *glua.LFunction:
		L.Push(repl)
		L.Call(st.pushCaptures(L, src, cs), 1)
		v = L.Get(-1)
		L.Pop(1)
	}
	switch v := v.(type) {
	case *glua.LNilType:
		b.add(L, whole)
	case glua.LBool:
		if v {
			L.RaiseError("invalid replacement value (a boolean)")
		}
		b.add(L, whole)
	case glua.LString, glua.LNumber:
		b.add(L, glua.LVAsString(v))
	default:
		L.RaiseError("invalid replacement value (a %s)", v.Type())
	}
}

// addRepl adds a replacement string: %0 is the whole match, %1-%9 the
// captures, % before any other character that character.
func (st *state) addRepl(L *glua.LState, b *builder, repl, src string, cs []pattern.Capture, whole string) {
	for repl != "" {
		i := strings.IndexByte(repl, '%')
		if i < 0 || i == len(repl)-1 {
			b.add(L, repl)
			return
		}
		b.add(L, repl[:i])
		switch c := repl[i+1]; {
		case c == '0':
			b.add(L, whole)
		case '1' <= c && c <= '9':
			k := int(c - '1')
			if k >= len(cs) {
				L.RaiseError("invalid capture index %%%d", k+1)
			}
			b.add(L, glua.LVAsString(st.captureValue(L, src, cs[k])))
		default:
			b.add(L, repl[i+1:i+2])
		}
		repl = repl[i+2:]
	}
}
