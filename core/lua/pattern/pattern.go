// Package pattern matches Lua 5.1 patterns, the language of string.find,
// string.match, string.gmatch and string.gsub, under a context: a search
// counts its steps and gives up with the context's error, checked every
// few thousand steps, so a pathological pattern on a long subject
// (".-.-.-b" on 30,000 "a"s, a cubic search) ends at the caller's deadline
// instead of pinning a core.
//
// The matcher is a port of Lua 5.1's lstrlib.c (match, max_expand,
// min_expand, captures, %b, %f and back-references) with the limits of
// later Lua versions: a nesting depth of 200 ("pattern too complex") and 32
// captures. Its recursion is bounded by the pattern, never by the subject.
// A pattern is checked whole when compiled, so a malformed one is an error
// even where Lua 5.1 would not reach the bad part.
//
// Lua 5.1 is Copyright (C) 1994-2012 Lua.org, PUC-Rio, under the MIT
// licence:
//
//	Permission is hereby granted, free of charge, to any person obtaining
//	a copy of this software and associated documentation files (the
//	"Software"), to deal in the Software without restriction, including
//	without limitation the rights to use, copy, modify, merge, publish,
//	distribute, sublicense, and/or sell copies of the Software, and to
//	permit persons to whom the Software is furnished to do so, subject to
//	the following conditions:
//
//	The above copyright notice and this permission notice shall be
//	included in all copies or substantial portions of the Software.
//
//	THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND,
//	EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF
//	MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
//	NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE
//	LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION
//	OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION
//	WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
package pattern

import (
	"context"
	"fmt"
)

// Limits of a pattern, as in Lua 5.2 and later.
const (
	MaxCaptures = 32  // captures in one pattern
	MaxDepth    = 200 // nested pattern items on one path of the search

	// checkEvery is how many steps a search takes between two looks at
	// its context: a step is a few nanoseconds, so the context is looked
	// at every few microseconds.
	checkEvery = 1 << 10
)

// Error is a malformed pattern or a search the pattern makes too deep.
type Error struct {
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// ErrTooComplex is what a search that nests deeper than MaxDepth returns.
var ErrTooComplex = &Error{"pattern too complex"}

// Pattern is a checked pattern. It is immutable and safe for concurrent
// use.
type Pattern struct {
	p        string // without the leading '^' of an anchored pattern
	anchored bool
	captures int // number of captures (pairs of parentheses)
}

// Compile checks pat whole: a '%' at the end, a '[' without ']', a '%b'
// without its two characters, a '%f' without '[', a ')' without '(', a
// '(' without ')', a back-reference to a capture that is not closed
// before it, and more than MaxCaptures captures are errors. With anchor,
// a leading '^' anchors the pattern (string.find, match and gsub);
// without, it is a plain character (string.gmatch, as in Lua 5.1).
func Compile(pat string, anchor bool) (*Pattern, error) {
	p := &Pattern{p: pat}
	if anchor && len(pat) > 0 && pat[0] == '^' {
		p.p, p.anchored = pat[1:], true
	}
	n, err := check(p.p)
	if err != nil {
		return nil, err
	}
	p.captures = n
	return p, nil
}

// NumCaptures returns the number of captures in the pattern.
func (p *Pattern) NumCaptures() int { return p.captures }

// Anchored reports whether the pattern is anchored: Find tries it at init
// only, and string.gsub replaces at most once.
func (p *Pattern) Anchored() bool { return p.anchored }

// check validates the pattern and returns its number of captures.
func check(p string) (int, error) {
	var (
		opened int   // captures opened so far
		open   []int // indexes of the captures not closed yet
		closed = make([]bool, 0, 4)
	)
	for i := 0; i < len(p); {
		switch p[i] {
		case '(':
			if opened == MaxCaptures {
				return 0, &Error{"too many captures"}
			}
			if i+1 < len(p) && p[i+1] == ')' { // position capture
				opened++
				closed = append(closed, true)
				i += 2
				continue
			}
			open = append(open, opened)
			closed = append(closed, false)
			opened++
			i++
			continue
		case ')':
			if len(open) == 0 {
				return 0, &Error{"invalid pattern capture"}
			}
			closed[open[len(open)-1]] = true
			open = open[:len(open)-1]
			i++
			continue
		case '%':
			if i+1 < len(p) {
				switch c := p[i+1]; {
				case c == 'b':
					if i+3 >= len(p) {
						return 0, &Error{"unbalanced pattern"}
					}
					i += 4
					continue
				case c == 'f':
					if i+2 >= len(p) || p[i+2] != '[' {
						return 0, &Error{"missing '[' after '%f' in pattern"}
					}
					end, err := classEnd(p, i+2)
					if err != nil {
						return 0, err
					}
					i = end
					continue
				case c >= '0' && c <= '9':
					l := int(c - '1')
					if l < 0 || l >= opened || !closed[l] {
						return 0, &Error{"invalid capture index"}
					}
					i += 2
					continue
				}
			}
		}
		end, err := classEnd(p, i)
		if err != nil {
			return 0, err
		}
		i = end
		if i < len(p) && isQuantifier(p[i]) {
			i++
		}
	}
	if len(open) > 0 {
		return 0, &Error{"unfinished capture"}
	}
	return opened, nil
}

func isQuantifier(c byte) bool { return c == '?' || c == '*' || c == '+' || c == '-' }

// classEnd returns the index just after the single-character class at
// p[i]: a plain character, '.', "%x" or a set "[…]".
func classEnd(p string, i int) (int, error) {
	c := p[i]
	i++
	switch c {
	case '%':
		if i >= len(p) {
			return 0, &Error{"malformed pattern (ends with '%')"}
		}
		return i + 1, nil
	case '[':
		if i < len(p) && p[i] == '^' {
			i++
		}
		for { // look for a ']'; the first character of the set may be one
			if i >= len(p) {
				return 0, &Error{"malformed pattern (missing ']')"}
			}
			c := p[i]
			i++
			if c == '%' && i < len(p) {
				i++ // skip escapes (e.g. "%]")
			}
			if i < len(p) && p[i] == ']' {
				return i + 1, nil
			}
		}
	}
	return i, nil
}

// Capture is one capture of a match: the subject's bytes [Start, End), or
// for a position capture "()" the position Start (0-based; Lua sees
// Start+1).
type Capture struct {
	Start, End int
	Position   bool
}

const (
	capUnfinished = -1
	capPosition   = -2
)

type capture struct {
	init, len int // len is capUnfinished, capPosition or the length
}

// Search is one subject searched with one pattern, perhaps many times
// (gmatch, gsub): it counts the steps of every match it tries, and looks
// at the context it is given every few thousand steps. It is not safe for
// concurrent use.
type Search struct {
	p     *Pattern
	src   string
	steps int
	next  int // steps at which to look at the context again
	level int // captures open or closed in the match being tried
	depth int
	caps  [MaxCaptures]capture
}

// NewSearch returns a search of src for p.
func (p *Pattern) NewSearch(src string) *Search {
	return &Search{p: p, src: src}
}

// Steps returns the steps the search has taken so far.
func (s *Search) Steps() int { return s.steps }

// errStop carries a context's error or an *Error out of the recursion.
type errStop struct{ err error }

// At tries the pattern at position pos (0-based, 0 to len(src)), without
// looking at the anchor (gmatch and gsub know it), and returns the end of
// the match. The captures of a match are read with Captures before the
// next call.
func (s *Search) At(ctx context.Context, pos int) (end int, ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			stop, isStop := r.(errStop)
			if !isStop {
				panic(r)
			}
			end, ok, err = 0, false, stop.err
		}
	}()
	s.level, s.depth = 0, 0
	end = s.match(ctx, pos, 0)
	return end, end >= 0, nil
}

// Find searches from init (0-based, clamped to 0…len(src)) for the first
// position where the pattern matches, trying only init if the pattern is
// anchored, and returns the match's bounds.
func (s *Search) Find(ctx context.Context, init int) (start, end int, ok bool, err error) {
	init = max(0, min(init, len(s.src)))
	for pos := init; pos <= len(s.src); pos++ {
		end, ok, err := s.At(ctx, pos)
		if err != nil || ok {
			return pos, end, ok, err
		}
		if s.p.anchored {
			break
		}
	}
	return 0, 0, false, nil
}

// Captures returns the captures of the last match, which spanned [start,
// end): the pattern's captures, or the whole match if it has none.
func (s *Search) Captures(start, end int) []Capture {
	if s.level == 0 {
		return []Capture{{Start: start, End: end}}
	}
	out := make([]Capture, s.level)
	for i, c := range s.caps[:s.level] {
		if c.len == capPosition {
			out[i] = Capture{Start: c.init, End: c.init, Position: true}
		} else {
			out[i] = Capture{Start: c.init, End: c.init + c.len}
		}
	}
	return out
}

// step counts n steps and looks at ctx every checkEvery of them.
func (s *Search) step(ctx context.Context, n int) {
	s.steps += n
	if s.steps >= s.next {
		s.next = s.steps + checkEvery
		if err := ctx.Err(); err != nil {
			panic(errStop{fmt.Errorf("pattern: %w", err)})
		}
	}
}

// match is lstrlib.c's match: the end of a match of p[pi:] at src[si:],
// or -1. Single items and the ends of the pattern loop; quantifiers and
// captures recurse, each time a step further into the pattern.
func (s *Search) match(ctx context.Context, si, pi int) int {
	s.depth++
	if s.depth > MaxDepth {
		panic(errStop{ErrTooComplex})
	}
	defer func() { s.depth-- }()
	p := s.p.p
	for {
		s.step(ctx, 1)
		if pi == len(p) {
			return si
		}
		switch p[pi] {
		case '(':
			if pi+1 < len(p) && p[pi+1] == ')' {
				return s.startCapture(ctx, si, pi+2, capPosition)
			}
			return s.startCapture(ctx, si, pi+1, capUnfinished)
		case ')':
			return s.endCapture(ctx, si, pi+1)
		case '$':
			if pi+1 == len(p) {
				if si == len(s.src) {
					return si
				}
				return -1
			}
		case '%':
			if nsi, npi, ok := s.special(ctx, si, pi); ok {
				if nsi < 0 {
					return -1
				}
				si, pi = nsi, npi
				continue
			}
		}
		// A single-character class, perhaps with a quantifier.
		ep, _ := classEnd(p, pi)
		m := si < len(s.src) && s.single(ctx, s.src[si], pi, ep)
		if ep < len(p) {
			switch p[ep] {
			case '?':
				if m {
					if res := s.match(ctx, si+1, ep+1); res >= 0 {
						return res
					}
				}
				pi = ep + 1
				continue
			case '*':
				return s.maxExpand(ctx, si, pi, ep)
			case '+':
				if !m {
					return -1
				}
				return s.maxExpand(ctx, si+1, pi, ep)
			case '-':
				return s.minExpand(ctx, si, pi, ep)
			}
		}
		if !m {
			return -1
		}
		si, pi = si+1, ep
	}
}

// special matches the escapes that are not classes at p[pi:] (%bxy, %f[set],
// %1-%9) at src[si:]: ok is false if p[pi:] is not one of them, si -1 if
// it does not match.
func (s *Search) special(ctx context.Context, si, pi int) (nsi, npi int, ok bool) {
	p := s.p.p
	switch c := p[pi+1]; {
	case c == 'b':
		return s.matchBalance(ctx, si, p[pi+2], p[pi+3]), pi + 4, true
	case c == 'f':
		pi += 2
		ep, _ := classEnd(p, pi)
		prev, cur := byte(0), byte(0)
		if si > 0 {
			prev = s.src[si-1]
		}
		if si < len(s.src) {
			cur = s.src[si]
		}
		if matchSet(prev, p[pi:ep-1]) || !matchSet(cur, p[pi:ep-1]) {
			return -1, ep, true
		}
		return si, ep, true
	case c >= '0' && c <= '9':
		return s.matchCapture(ctx, si, int(c-'1')), pi + 2, true
	}
	return si, pi, false
}

// maxExpand matches as many repetitions of the class p[pi:ep] as it can,
// then gives them back one at a time until the rest matches.
func (s *Search) maxExpand(ctx context.Context, si, pi, ep int) int {
	i := 0
	for si+i < len(s.src) && s.single(ctx, s.src[si+i], pi, ep) {
		s.step(ctx, 1)
		i++
	}
	for ; i >= 0; i-- {
		if res := s.match(ctx, si+i, ep+1); res >= 0 {
			return res
		}
	}
	return -1
}

// minExpand tries the rest of the pattern after as few repetitions of the
// class p[pi:ep] as it can.
func (s *Search) minExpand(ctx context.Context, si, pi, ep int) int {
	for {
		if res := s.match(ctx, si, ep+1); res >= 0 {
			return res
		}
		if si < len(s.src) && s.single(ctx, s.src[si], pi, ep) {
			si++
			continue
		}
		return -1
	}
}

func (s *Search) startCapture(ctx context.Context, si, pi, what int) int {
	s.caps[s.level] = capture{init: si, len: what}
	s.level++
	res := s.match(ctx, si, pi)
	if res < 0 {
		s.level--
	}
	return res
}

func (s *Search) endCapture(ctx context.Context, si, pi int) int {
	l := s.level - 1
	for ; l >= 0 && s.caps[l].len != capUnfinished; l-- {
	}
	// Compile checked the parentheses: l is an open capture.
	s.caps[l].len = si - s.caps[l].init
	res := s.match(ctx, si, pi)
	if res < 0 {
		s.caps[l].len = capUnfinished
	}
	return res
}

// matchBalance matches %bxy at src[si:]: x, then up to the y that
// balances it.
func (s *Search) matchBalance(ctx context.Context, si int, b, e byte) int {
	if si >= len(s.src) || s.src[si] != b {
		return -1
	}
	cont := 1
	for si++; si < len(s.src); si++ {
		s.step(ctx, 1)
		switch s.src[si] {
		case e:
			if cont--; cont == 0 {
				return si + 1
			}
		case b:
			cont++
		}
	}
	return -1
}

// matchCapture matches a back-reference to capture l at src[si:].
func (s *Search) matchCapture(ctx context.Context, si, l int) int {
	c := s.caps[l] // Compile checked l is a capture closed before
	if c.len == capPosition {
		c.len = 0
	}
	s.step(ctx, 1+c.len/64)
	if len(s.src)-si >= c.len && s.src[si:si+c.len] == s.src[c.init:c.init+c.len] {
		return si + c.len
	}
	return -1
}

// single reports whether c matches the class p[pi:ep].
func (s *Search) single(ctx context.Context, c byte, pi, ep int) bool {
	p := s.p.p
	switch p[pi] {
	case '.':
		return true
	case '%':
		return matchClass(c, p[pi+1])
	case '[':
		s.step(ctx, (ep-pi)/16)
		return matchSet(c, p[pi:ep-1])
	}
	return p[pi] == c
}

// matchSet reports whether c is in the set set+"]" (set starts with '[').
func matchSet(c byte, set string) bool {
	in := true
	i := 1
	if i < len(set) && set[i] == '^' {
		in = false
		i++
	}
	for ; i < len(set); i++ {
		switch {
		case set[i] == '%' && i+1 < len(set):
			i++
			if matchClass(c, set[i]) {
				return in
			}
		case i+2 < len(set) && set[i+1] == '-':
			if set[i] <= c && c <= set[i+2] {
				return in
			}
			i += 2
		case set[i] == c:
			return in
		}
	}
	return !in
}

// matchClass reports whether c is in the class %cl: a letter of "acdlpsuwxz"
// (upper case for the complement, ASCII only as in the C locale), or else
// cl itself.
func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isAlpha(c)
	case 'c':
		res = c < 0x20 || c == 0x7f
	case 'd':
		res = isDigit(c)
	case 'l':
		res = 'a' <= c && c <= 'z'
	case 'p':
		res = isPunct(c)
	case 's':
		res = c == ' ' || ('\t' <= c && c <= '\r')
	case 'u':
		res = 'A' <= c && c <= 'Z'
	case 'w':
		res = isAlpha(c) || isDigit(c)
	case 'x':
		res = isDigit(c) || ('a' <= c|0x20 && c|0x20 <= 'f')
	case 'z':
		res = c == 0
	default:
		return cl == c
	}
	if 'A' <= cl && cl <= 'Z' {
		return !res
	}
	return res
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isPunct(c byte) bool {
	return '!' <= c && c <= '~' && !isAlpha(c) && !isDigit(c)
}
