package mtasts

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want *Policy
	}{
		{"enforce CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
			&Policy{Mode: ModeEnforce, MX: []string{"mx1.example.com", "*.example.net"}, MaxAge: 604800 * time.Second}},
		{"testing LF no final newline", "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: 86400",
			&Policy{Mode: ModeTesting, MX: []string{"mx.example.com"}, MaxAge: 86400 * time.Second}},
		{"none without mx", "version: STSv1\nmode: none\nmax_age: 0\n",
			&Policy{Mode: ModeNone}},
		{"any order, white space, extensions", "mx:MX.Example.COM \t\nmax_age:\t60\nfoo_bar: baz qux\nversion: STSv1\nmode: enforce\nx.y-z: ünïcode\n",
			&Policy{Mode: ModeEnforce, MX: []string{"MX.Example.COM"}, MaxAge: time.Minute}},
		{"byte order mark, blank lines", "\uFEFFversion: STSv1\n\nmode: enforce\n  \nmx: a.example\nmax_age: 1\n\n\n",
			&Policy{Mode: ModeEnforce, MX: []string{"a.example"}, MaxAge: time.Second}},
		{"max_age capped", "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 9999999999\n",
			&Policy{Mode: ModeTesting, MX: []string{"a.example"}, MaxAge: MaxMaxAge}},
		{"max_age at the cap", "version: STSv1\nmode: testing\nmx: a.example\nmax_age: 31557600\n",
			&Policy{Mode: ModeTesting, MX: []string{"a.example"}, MaxAge: 31557600 * time.Second}},
		{"single-label mx", "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 5\n",
			&Policy{Mode: ModeEnforce, MX: []string{"localhost"}, MaxAge: 5 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParsePolicy (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePolicyErrors(t *testing.T) {
	const good = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n"
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty", "", "mtasts: invalid policy: no version"},
		{"no version", "mode: enforce\nmx: a.example\nmax_age: 1\n", "mtasts: invalid policy: no version"},
		{"no mode", "version: STSv1\nmx: a.example\nmax_age: 1\n", "mtasts: invalid policy: no mode"},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", "mtasts: invalid policy: no max_age"},
		{"no mx in enforce", "version: STSv1\nmode: enforce\nmax_age: 1\n", "mtasts: invalid policy: no mx in mode enforce"},
		{"no mx in testing", "version: STSv1\nmode: testing\nmax_age: 1\n", "mtasts: invalid policy: no mx in mode testing"},
		{"version 2", strings.Replace(good, "STSv1", "STSv2", 1), `mtasts: invalid policy: line 1: version "STSv2" is not STSv1`},
		{"version case", strings.Replace(good, "STSv1", "stsv1", 1), `mtasts: invalid policy: line 1: version "stsv1" is not STSv1`},
		{"mode unknown", strings.Replace(good, "enforce", "Enforce", 1), `mtasts: invalid policy: line 2: mode "Enforce" is not enforce, testing or none`},
		{"mode twice", good + "mode: testing\n", "mtasts: invalid policy: line 5: mode given twice"},
		{"version twice", good + "version: STSv1\n", "mtasts: invalid policy: line 5: version given twice"},
		{"max_age negative", strings.Replace(good, "86400", "-1", 1), `mtasts: invalid policy: line 4: max_age "-1" is not 1 to 10 digits`},
		{"max_age 11 digits", strings.Replace(good, "86400", "12345678901", 1), `mtasts: invalid policy: line 4: max_age "12345678901" is not 1 to 10 digits`},
		{"max_age empty", strings.Replace(good, "86400", "", 1), `mtasts: invalid policy: line 4: max_age "" is not 1 to 10 digits`},
		{"max_age with unit", strings.Replace(good, "86400", "1d", 1), `mtasts: invalid policy: line 4: max_age "1d" is not 1 to 10 digits`},
		{"mx wildcard inside", strings.Replace(good, "mx.example.com", "mx.*.example.com", 1), `mtasts: invalid policy: line 3: mx "mx.*.example.com" is not a host name or *.host name`},
		{"mx double wildcard", strings.Replace(good, "mx.example.com", "*.*.example.com", 1), `mtasts: invalid policy: line 3: mx "*.*.example.com" is not a host name or *.host name`},
		{"mx bare wildcard", strings.Replace(good, "mx.example.com", "*", 1), `mtasts: invalid policy: line 3: mx "*" is not a host name or *.host name`},
		{"mx partial wildcard", strings.Replace(good, "mx.example.com", "*mx.example.com", 1), `mtasts: invalid policy: line 3: mx "*mx.example.com" is not a host name or *.host name`},
		{"mx trailing dot", strings.Replace(good, "mx.example.com", "mx.example.com.", 1), `mtasts: invalid policy: line 3: mx "mx.example.com." is not a host name or *.host name`},
		{"mx empty", strings.Replace(good, "mx.example.com", "", 1), `mtasts: invalid policy: line 3: mx "" is not a host name or *.host name`},
		{"mx hyphen", strings.Replace(good, "mx.example.com", "-mx.example.com", 1), `mtasts: invalid policy: line 3: mx "-mx.example.com" is not a host name or *.host name`},
		{"mx two names", strings.Replace(good, "mx.example.com", "a.example b.example", 1), `mtasts: invalid policy: line 3: mx "a.example b.example" is not a host name or *.host name`},
		{"no colon", good + "garbage\n", "mtasts: invalid policy: line 5: no colon"},
		{"space before colon", strings.Replace(good, "mode:", "mode :", 1), `mtasts: invalid policy: line 2: bad key "mode "`},
		{"empty key", good + ": x\n", `mtasts: invalid policy: line 5: bad key ""`},
		{"control character", good + "ext: a\x00b\n", "mtasts: invalid policy: line 5: ext: control character in value"},
		{"bare CR", "version: STSv1\rmode: enforce\nmx: a.example\nmax_age: 1\n", "mtasts: invalid policy: line 1: version: control character in value"},
		{"not UTF-8", good + "ext: \xff\n", "mtasts: invalid policy: not UTF-8"},
		{"HTML", "<html><body>404</body></html>", `mtasts: invalid policy: line 1: no colon`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tc.body))
			if err == nil {
				t.Fatalf("ParsePolicy = %+v, want error %q", p, tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) || FailureType(err) != "sts-policy-invalid" {
				t.Errorf("error %v: not ErrInvalid (FailureType %q)", err, FailureType(err))
			}
		})
	}
}

func TestPolicyStringRoundTrip(t *testing.T) {
	p := &Policy{Mode: ModeTesting, MX: []string{"mx1.example.com", "*.Example.net"}, MaxAge: 86400 * time.Second, ID: "x"}
	wantLines := []string{"version: STSv1", "mode: testing", "mx: mx1.example.com", "mx: *.Example.net", "max_age: 86400"}
	if diff := cmp.Diff(wantLines, p.Strings()); diff != "" {
		t.Errorf("Strings (-want +got):\n%s", diff)
	}
	if want := strings.Join(wantLines, "\n") + "\n"; p.String() != want {
		t.Errorf("String = %q, want %q", p.String(), want)
	}
	back, err := ParsePolicy([]byte(p.String()))
	if err != nil {
		t.Fatalf("ParsePolicy(String()): %v", err)
	}
	back.ID = p.ID
	if diff := cmp.Diff(p, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	none := &Policy{Mode: ModeNone}
	if diff := cmp.Diff([]string{"version: STSv1", "mode: none", "max_age: 0"}, none.Strings()); diff != "" {
		t.Errorf("Strings of mode none (-want +got):\n%s", diff)
	}
}

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		txt, id, err string
	}{
		{txt: "v=STSv1; id=20160831085700Z;", id: "20160831085700Z"},
		{txt: "v=STSv1; id=20160831085700Z", id: "20160831085700Z"},
		{txt: "v=STSv1;id=abc", id: "abc"},
		{txt: "v=STSv1 ;\tid=abc\t; ", id: "abc"},
		{txt: "v=STSv1; ext=x!y; id=abc; other-ext.1=:", id: "abc"},
		{txt: "v=STSv1; id=" + strings.Repeat("a", 32), id: strings.Repeat("a", 32)},
		{txt: "v=STSv1; id=" + strings.Repeat("a", 33), err: `mtasts: record "v=STSv1; id=` + strings.Repeat("a", 33) + `": id "` + strings.Repeat("a", 33) + `" is not 1 to 32 letters and digits`},
		{txt: "v=STSv1; id=2016-08-31", err: `mtasts: record "v=STSv1; id=2016-08-31": id "2016-08-31" is not 1 to 32 letters and digits`},
		{txt: "v=STSv1; id=", err: `mtasts: record "v=STSv1; id=": bad field "id="`},
		{txt: "v=STSv1;", err: `mtasts: record "v=STSv1;": bad field ""`},
		{txt: "v=STSv1", err: `mtasts: record "v=STSv1" has no id`},
		{txt: "v=STSv1; ext=1", err: `mtasts: record "v=STSv1; ext=1" has no id`},
		{txt: "v=STSv1; id=a; id=b", err: `mtasts: record "v=STSv1; id=a; id=b": id given twice`},
		{txt: "v=STSv1; v=STSv1; id=a", err: `mtasts: record "v=STSv1; v=STSv1; id=a": v given twice`},
		{txt: "v=STSv1;; id=a", err: `mtasts: record "v=STSv1;; id=a": bad field ""`},
		{txt: "v=STSv1; id=a;;", err: `mtasts: record "v=STSv1; id=a;;": bad field ""`},
		{txt: "v=STSv1 id=a", err: `mtasts: record "v=STSv1 id=a": no ; after v=STSv1`},
		{txt: "v=STSv1; id=a b", err: `mtasts: record "v=STSv1; id=a b": bad field "id=a b"`},
		{txt: "v=STSv1; _x=1; id=a", err: `mtasts: record "v=STSv1; _x=1; id=a": bad field "_x=1"`},
		{txt: "v=STSv10; id=a", err: `mtasts: record "v=STSv10; id=a" does not begin with v=STSv1`},
		{txt: "v=spf1 -all", err: `mtasts: record "v=spf1 -all" does not begin with v=STSv1`},
		{txt: " v=STSv1; id=a", err: `mtasts: record " v=STSv1; id=a" does not begin with v=STSv1`},
		{txt: "", err: `mtasts: record "" does not begin with v=STSv1`},
	} {
		t.Run(tc.txt, func(t *testing.T) {
			id, err := ParseRecord(tc.txt)
			var got string
			if err != nil {
				got = err.Error()
			}
			if id != tc.id || got != tc.err {
				t.Errorf("ParseRecord = %q, %q; want %q, %q", id, got, tc.id, tc.err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mx1.example.com", "*.Example.NET", "localhost"}}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"mx1.example.com", true},
		{"MX1.Example.Com", true},
		{"mx1.example.com.", true},
		{"mx2.example.com", false},
		{"example.com", false},
		{"x.mx1.example.com", false},
		{"mail.example.net", true},
		{"MAIL.example.net.", true},
		{"example.net", false},
		{"a.b.example.net", false},
		{".example.net", false},
		{"*.example.net", true}, // a literal star label is one label; no resolver gives it
		{"localhost", true},
		{"", false},
		{".", false},
	} {
		if got := p.Match(tc.host); got != tc.want {
			t.Errorf("Match(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	var nilPolicy *Policy
	if nilPolicy.Match("mx1.example.com") {
		t.Error("nil policy matched")
	}
}

func TestFailureType(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{errors.New("other"), ""},
		{ErrFetch, "sts-policy-fetch-error"},
		{ErrInvalid, "sts-policy-invalid"},
		{ErrWebPKI, "sts-webpki-invalid"},
		{wrap(ErrWebPKI), "sts-webpki-invalid"},
		{wrap(ErrInvalid), "sts-policy-invalid"},
		{wrap(ErrFetch), "sts-policy-fetch-error"},
	} {
		if got := FailureType(tc.err); got != tc.want {
			t.Errorf("FailureType(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func wrap(err error) error { return errors.Join(errors.New("context"), err) }
