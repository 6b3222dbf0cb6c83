package arc

import (
	"context"
	"strings"
	"testing"
)

func FuzzParseTags(f *testing.F) {
	for _, s := range []string{
		"", ";", "a=b", "a=rsa-sha256; b=abc\r\n def;", "v=DKIM1; k=ed25519; p=", "a=1; a=2", " x = y ; ",
		"i=1; a=rsa-sha256; cv=none; d=fwd.test; s=s1;\r\n t=1700000000; b=AAAA==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := parseTags(s)
		if err != nil {
			return
		}
		seen := make(map[string]bool)
		for _, tg := range tags {
			if !validTagName(tg.name) || seen[tg.name] {
				t.Fatalf("%q: tag %q", s, tg.name)
			}
			seen[tg.name] = true
			if tg.start > tg.end || tg.end > len(s) || strings.Trim(s[tg.start:tg.end], fws) != tg.value {
				t.Fatalf("%q: tag %s spans %d..%d for %q", s, tg.name, tg.start, tg.end, tg.value)
			}
		}
	})
}

// FuzzVerify: Verify never panics, its status is one of four and an error
// comes only with TempError; Seal on the outcome never panics either.
func FuzzVerify(f *testing.F) {
	s := newSealers(f)
	records := map[string]string{}
	for name, rec := range s.w.records {
		records[name] = rec
	}
	lookup := func(_ context.Context, name string) ([]string, error) {
		if rec, ok := records[name]; ok {
			return []string{rec}, nil
		}
		return nil, context.DeadlineExceeded // temporary, as resolver.IsTemporary sees it
	}
	one := s.seal(f, s.fwd, []byte(testMessage), "mx.fwd.test; spf=pass")
	two := s.seal(f, s.list, one, "mx.lists.test; arc=pass")
	for _, seed := range [][]byte{nil, []byte(testMessage), one, two, []byte("ARC-Seal: i=1\r\n\r\n")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		res, err := Verify(context.Background(), msg, lookup)
		switch res.Status {
		case None, Pass, Fail, TempError:
		default:
			t.Fatalf("status %q", res.Status)
		}
		if (err != nil) != (res.Status == TempError) {
			t.Fatalf("status %s with error %v", res.Status, err)
		}
		if res.Status != TempError {
			_, _ = s.ed.Seal(msg, res.Status, "mx.ed.test; arc="+string(res.Status)) // Ed25519: fast
		}
	})
}
