package pattern_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/lua/pattern"
)

// find runs a search as string.find does and renders the result as Lua
// would print it: "start end captures…" (1-based, inclusive) or "nil".
func find(t testing.TB, src, pat string, init int) string {
	t.Helper()
	p, err := pattern.Compile(pat, true)
	if err != nil {
		return "error: " + err.Error()
	}
	s := p.NewSearch(src)
	start, end, ok, err := s.Find(context.Background(), init)
	if err != nil {
		return "error: " + err.Error()
	}
	if !ok {
		return "nil"
	}
	out := fmt.Sprintf("%d %d", start+1, end)
	if p.NumCaptures() > 0 {
		out += " " + captures(src, s.Captures(start, end))
	}
	return out
}

func captures(src string, cs []pattern.Capture) string {
	var parts []string
	for _, c := range cs {
		if c.Position {
			parts = append(parts, fmt.Sprint(c.Start+1))
		} else {
			parts = append(parts, fmt.Sprintf("%q", src[c.Start:c.End]))
		}
	}
	return strings.Join(parts, " ")
}

// TestFind checks the matcher against results of Lua 5.1's string.find.
func TestFind(t *testing.T) {
	tests := []struct {
		src, pat string
		init     int // 0-based
		want     string
	}{
		{"hello world", "o w", 0, "5 7"},
		{"hello", "l+", 0, "3 4"},
		{"hello", "", 0, "1 0"},
		{"hello", "", 2, "3 2"},
		{"hello", "", 9, "6 5"},
		{"hello", "$", 0, "6 5"},
		{"hello", "^h", 0, "1 1"},
		{"hello", "^e", 0, "nil"},
		{"hello", "^e", 1, "2 2"},
		{"hello", "o$", 0, "5 5"},
		{"a$b", "$b", 0, "2 3"},
		{"a^b", "a^", 0, "1 2"},
		{"hello", "(h)(e)", 0, `1 2 "h" "e"`},
		{"  x  ", "^%s*(.-)%s*$", 0, `1 5 "x"`},
		{"key=val", "(%w+)=(%w+)", 0, `1 7 "key" "val"`},
		{"abc", "()b()", 0, "2 2 2 3"},
		{"THE (quick) fox", "%((%a+)%)", 0, `5 11 "quick"`},
		{"x [[y]] z", "%b[]", 0, "3 7"},
		{"x [[y] z", "%b[]", 0, "4 6"},
		{"x [[y z", "%b[]", 0, "nil"},
		{"THE (quick) fox", "%f[%a]%a+", 4, "6 10"},
		{"hello hello", "(h%a+) %1", 0, `1 11 "hello"`},
		{"hello help", "(h%a+) %1", 0, "nil"},
		{"a.b", "%.", 0, "2 2"},
		{"x]y", "[]]", 0, "2 2"},
		{"x-y", "[a-]", 0, "2 2"},
		{"x5", "[%d]", 0, "2 2"},
		{"ab", "[^a]", 0, "2 2"},
		{"a]b", "[%]]", 0, "2 2"},
		{"ab-", "[%a-]+", 0, "1 3"},
		{"aaa", "a-b", 0, "nil"},
		{"aaab", "a-b", 0, "1 4"},
		{"aaa", "^a-$", 0, "1 3"},
		{"aaa", "a*", 0, "1 3"},
		{"baaa", "a*", 0, "1 0"},
		{"aaa", "a?a?a?a", 0, "1 3"},
		{"a+b", "a+b", 0, "nil"},
		{"aab", "a+b", 0, "1 3"},
		{"*a", "*a", 0, "1 2"},
		{"a**", "a**", 0, "1 2"},
		{"\x00x", "%z", 0, "1 1"},
		{"\x00x", "%Z", 0, "2 2"},
		{"ABC def", "%u+", 0, "1 3"},
		{"ABC def", "%l+", 0, "5 7"},
		{"a1!", "%p", 0, "3 3"},
		{"a\tb", "%c", 0, "2 2"},
		{"zFz", "%x", 0, "2 2"},
		{"é", "%a", 0, "nil"},
		{"abc", "(a)(b)(c)", 0, `1 3 "a" "b" "c"`},
		{"abc", "((a)(b))", 0, `1 2 "ab" "a" "b"`},
		{"user@Example.TEST", "@([^@]*)$", 0, `5 17 "Example.TEST"`},
		{"user@a@b", "^(.*)@([^@]*)$", 0, `1 8 "user@a" "b"`},
	}
	for _, tt := range tests {
		if got := find(t, tt.src, tt.pat, tt.init); got != tt.want {
			t.Errorf("find(%q, %q, %d) = %s, want %s", tt.src, tt.pat, tt.init+1, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ pat, want string }{
		{"%", "malformed pattern (ends with '%')"},
		{"a%", "malformed pattern (ends with '%')"},
		{"[a", "malformed pattern (missing ']')"},
		{"[]", "malformed pattern (missing ']')"},
		{"[^]", "malformed pattern (missing ']')"},
		{"[%", "malformed pattern (missing ']')"},
		{"(", "unfinished capture"},
		{"(()", "unfinished capture"},
		{")", "invalid pattern capture"},
		{"a)", "invalid pattern capture"},
		{"%1", "invalid capture index"},
		{"(a%1)", "invalid capture index"},
		{"(a)%2", "invalid capture index"},
		{"%0", "invalid capture index"},
		{"%b", "unbalanced pattern"},
		{"%bx", "unbalanced pattern"},
		{"%f", "missing '[' after '%f' in pattern"},
		{"%fa", "missing '[' after '%f' in pattern"},
		{"%f[a", "malformed pattern (missing ']')"},
		{strings.Repeat("()", 33), "too many captures"},
	}
	for _, tt := range tests {
		_, err := pattern.Compile(tt.pat, true)
		var perr *pattern.Error
		if !errors.As(err, &perr) || err.Error() != tt.want {
			t.Errorf("Compile(%q) = %v, want %q", tt.pat, err, tt.want)
		}
	}
	for _, ok := range []string{strings.Repeat("()", 32), "%b()", "(a)%1", "()%1", "[]]", "[^]]", "%f[%a]", "^", "$", "%%"} {
		if _, err := pattern.Compile(ok, true); err != nil {
			t.Errorf("Compile(%q) = %v, want no error", ok, err)
		}
	}
}

// TestGmatchCaret: without the anchor, '^' is a plain character.
func TestGmatchCaret(t *testing.T) {
	p, err := pattern.Compile("^a", false)
	if err != nil {
		t.Fatal(err)
	}
	s := p.NewSearch("a^a")
	start, end, ok, err := s.Find(context.Background(), 0)
	if !ok || err != nil || start != 1 || end != 3 {
		t.Errorf("Find = %d, %d, %v, %v; want 1, 3, true, nil", start, end, ok, err)
	}
}

func TestTooComplex(t *testing.T) {
	p, err := pattern.Compile(strings.Repeat("a?", 300), true)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = p.NewSearch(strings.Repeat("a", 300)).Find(context.Background(), 0)
	if !errors.Is(err, pattern.ErrTooComplex) {
		t.Errorf("err = %v, want %v", err, pattern.ErrTooComplex)
	}
}

// TestDeadline is the pattern: a cubic search that never ended
// with gopher-lua's matcher ends at the context's deadline.
func TestDeadline(t *testing.T) {
	p, err := pattern.Compile(".-.-.-b", true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	s := p.NewSearch(strings.Repeat("a", 30000))
	_, _, ok, err := s.Find(ctx, 0)
	took := time.Since(start)
	if ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Find = %v, %v; want the deadline", ok, err)
	}
	if took > 150*time.Millisecond {
		t.Errorf("Find took %v after a deadline of 100ms", took)
	}
	t.Logf("%d steps in %v", s.Steps(), took)
}

// TestCaptures checks Captures after At, as gsub and gmatch use it.
func TestCaptures(t *testing.T) {
	p, err := pattern.Compile("(%w+)=()", true)
	if err != nil {
		t.Fatal(err)
	}
	s := p.NewSearch("a=1, bc=2")
	end, ok, err := s.At(context.Background(), 5)
	if !ok || err != nil || end != 8 {
		t.Fatalf("At(5) = %d, %v, %v", end, ok, err)
	}
	want := []pattern.Capture{{Start: 5, End: 7}, {Start: 8, End: 8, Position: true}}
	if diff := cmp.Diff(want, s.Captures(5, end)); diff != "" {
		t.Errorf("captures (-want +got):\n%s", diff)
	}
	p, _ = pattern.Compile("%d", true)
	s = p.NewSearch("a=1")
	if end, ok, _ := s.At(context.Background(), 2); !ok || end != 3 {
		t.Fatalf("At(2) = %d, %v", end, ok)
	}
	if diff := cmp.Diff([]pattern.Capture{{Start: 2, End: 3}}, s.Captures(2, 3)); diff != "" {
		t.Errorf("whole match (-want +got):\n%s", diff)
	}
}
