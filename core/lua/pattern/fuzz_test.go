package pattern_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/yuin/gopher-lua/pm"

	"github.com/mailgate/gateway/core/lua/pattern"
)

// FuzzFind runs any pattern on any subject (a script's pattern on a
// client's input) and checks that the search ends (by its deadline at
// worst), never panics, and returns bounds and captures inside the
// subject. On an alphabet where gopher-lua's matcher, which this one
// replaces, follows Lua too ("ab.*+-?()^" in the pattern, "ab" in the
// subject), both must find the same match: each input is also mapped onto
// that alphabet and compared.
func FuzzFind(f *testing.F) {
	for _, seed := range []struct{ pat, src string }{
		{"^(.*)@([^@]*)$", "user@example.test"},
		{"<([^>]*)>", "Name <a@b>"},
		{"^%s*(.-)%s*$", "  x  "},
		{".-.-.-b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"%b()%f[%w](%w+)%1", "(x)ab ab"},
		{"[%a-]+()", "a-b c"},
		{"(a*(.)%w(%s*))", "aaa b"},
		{"a?b*(a-)", "abba"},
	} {
		f.Add(seed.pat, seed.src)
	}
	f.Fuzz(func(t *testing.T, pat, src string) {
		if len(src) > 4096 || len(pat) > 256 {
			return
		}
		search(t, pat, src)
		search(t, onto(pat, "ab.*+-?()^", 12), onto(src, "ab", 24))
	})
}

// search runs one search and checks it.
func search(t *testing.T, pat, src string) {
	p, err := pattern.Compile(pat, true)
	if err != nil {
		var perr *pattern.Error
		if !errors.As(err, &perr) {
			t.Fatalf("Compile(%q) = %T %v, want an *Error", pat, err, err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	s := p.NewSearch(src)
	start, end, ok, err := s.Find(ctx, 0)
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, pattern.ErrTooComplex) {
			t.Fatalf("Find(%q, %q) = %v", pat, src, err)
		}
		return
	}
	if ok {
		checkMatch(t, src, pat, start, end, s.Captures(start, end))
	}
	differential(t, pat, src, start, end, ok, s)
}

// onto maps the first n bytes of s onto alphabet.
func onto(s, alphabet string, n int) string {
	b := []byte(s[:min(n, len(s))])
	for i, c := range b {
		b[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(b)
}

func checkMatch(t *testing.T, src, pat string, start, end int, cs []pattern.Capture) {
	if start < 0 || start > end || end > len(src) {
		t.Fatalf("Find(%q, %q) = [%d, %d) outside the subject", pat, src, start, end)
	}
	for _, c := range cs {
		if c.Start < 0 || c.Start > c.End || c.End > len(src) {
			t.Fatalf("Find(%q, %q): capture %+v outside the subject", pat, src, c)
		}
	}
}

// differential compares with gopher-lua's matcher when pattern and
// subject are in the alphabet both follow Lua on, and the search was
// short (gopher-lua's has no budget).
func differential(t *testing.T, pat, src string, start, end int, ok bool, s *pattern.Search) {
	if !only(pat, "ab.*+-?()^") || !only(src, "ab") || s.Steps() > 100000 {
		return
	}
	mds, err := pm.Find(pat, []byte(src), 0, 1)
	if err != nil {
		t.Fatalf("pm.Find(%q, %q) = %v; pattern.Find found no error", pat, src, err)
	}
	if ok != (len(mds) == 1) {
		t.Fatalf("Find(%q, %q) found %v; pm found %d matches", pat, src, ok, len(mds))
	}
	if !ok {
		return
	}
	md := mds[0]
	if md.Capture(0) != start || md.Capture(1) != end {
		t.Fatalf("Find(%q, %q) = [%d, %d); pm [%d, %d)", pat, src, start, end, md.Capture(0), md.Capture(1))
	}
	cs := s.Captures(start, end)
	if md.CaptureLength() == 2 {
		return
	}
	if len(cs) != md.CaptureLength()/2-1 {
		t.Fatalf("Find(%q, %q): %d captures; pm %d", pat, src, len(cs), md.CaptureLength()/2-1)
	}
	for i, c := range cs {
		j := 2 * (i + 1)
		want := pattern.Capture{Start: md.Capture(j), End: md.Capture(j + 1)}
		if md.IsPosCapture(j) {
			want = pattern.Capture{Start: md.Capture(j) - 1, End: md.Capture(j) - 1, Position: true}
		}
		if c != want {
			t.Fatalf("Find(%q, %q): capture %d = %+v; pm %+v", pat, src, i+1, c, want)
		}
	}
}

func only(s, alphabet string) bool {
	for i := 0; i < len(s); i++ {
		found := false
		for j := 0; j < len(alphabet); j++ {
			found = found || s[i] == alphabet[j]
		}
		if !found {
			return false
		}
	}
	return true
}
