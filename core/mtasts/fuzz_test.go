package mtasts

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzParsePolicy: ParsePolicy never panics; what it accepts is a policy
// of a known mode, a max_age within the cap and valid mx patterns, which
// String writes and ParsePolicy reads back unchanged.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"", "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: none\nmax_age: 0", "\uFEFFversion:STSv1\nmode:testing\nmx:a\nmax_age:9999999999\next: ü\n",
		"version: STSv1\nmode: enforce\nmode: enforce\n", "mx: *.*.a\n", ":\n\r\n", "<html>",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			if FailureType(err) != "sts-policy-invalid" {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		switch {
		case p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone:
			t.Fatalf("mode %q", p.Mode)
		case p.MaxAge < 0 || p.MaxAge > MaxMaxAge || p.MaxAge%time.Second != 0:
			t.Fatalf("max_age %v", p.MaxAge)
		case len(p.MX) == 0 && p.Mode != ModeNone:
			t.Fatalf("no mx in mode %s", p.Mode)
		}
		for _, mx := range p.MX {
			if !validMXPattern(mx) {
				t.Fatalf("mx %q", mx)
			}
		}
		back, err := ParsePolicy([]byte(p.String()))
		if err != nil {
			t.Fatalf("ParsePolicy(%q): %v", p.String(), err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzParseRecord: ParseRecord never panics, and an id it returns is 1 to
// 32 letters and digits from a record that begins with v=STSv1.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"", "v=STSv1; id=20160831085700Z;", "v=STSv1;id=a;", "v=STSv1 ;\tid=abc\t; ", "v=STSv1; id=a; id=b",
		"v=STSv1;;", "v=STSv10", "v=STSv1; x=\x00; id=1", "v=STSv1; " + strings.Repeat("a=b;", 100) + "id=z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		id, err := ParseRecord(txt)
		if err != nil {
			if id != "" {
				t.Fatalf("id %q with error %v", id, err)
			}
			return
		}
		if !validID(id) || !isSTSRecord(txt) || !strings.Contains(txt, "id="+id) {
			t.Fatalf("ParseRecord(%q) = %q", txt, id)
		}
	})
}

// FuzzDecodeStored: what the Store gives back never panics the decoder,
// and a policy it accepts encodes and decodes to itself.
func FuzzDecodeStored(f *testing.F) {
	for _, s := range []string{
		"", "{}", "null", `{"id":"abc","fetched":"2026-12-06T18:00:00Z","policy":"version: STSv1\nmode: testing\nmx: a.example\nmax_age: 3600\n"}`,
		`{"id":"abc","fetched":"0001-01-01T00:00:00Z","policy":""}`, `{"id":1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := decodeStored(v)
		if err != nil {
			return
		}
		again, err := encodeStored(p)
		if err != nil {
			t.Fatalf("encodeStored: %v", err)
		}
		back, err := decodeStored(again)
		if err != nil {
			t.Fatalf("decodeStored(%q): %v", again, err)
		}
		if diff := cmp.Diff(p, back); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
