package arc

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

// The example of RFC 6376 §3.4.5.
func TestCanonicalizationRFC6376Example(t *testing.T) {
	msg := []byte("A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
	fields, body := splitMessage(msg)
	var relaxed, simple strings.Builder
	for _, f := range fields {
		relaxed.WriteString(relaxedHeader(f.name, f.value))
		simple.WriteString(simpleHeader(f.raw))
	}
	checks := []struct{ name, got, want string }{
		{"relaxed header", relaxed.String(), "a:X\r\nb:Y Z\r\n"},
		{"simple header", simple.String(), "A: X\r\nB : Y\t\r\n\tZ  \r\n"},
		{"relaxed body", string(relaxedBody(body)), " C\r\nD E\r\n"},
		{"simple body", string(simpleBody(body)), " C \r\nD \t E\r\n"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestBodyCanonicalization(t *testing.T) {
	cases := []struct{ in, relaxed, simple string }{
		{"", "", "\r\n"},
		{"\r\n\r\n", "", "\r\n"},
		{"x", "x\r\n", "x\r\n"},
		{"a\nb\n\n", "a\r\nb\r\n", "a\r\nb\r\n"}, // bare LF read as CRLF
		{"a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n"},
		{" \t \r\nx", "\r\nx\r\n", " \t \r\nx\r\n"},
	}
	for _, c := range cases {
		if got := string(relaxedBody([]byte(c.in))); got != c.relaxed {
			t.Errorf("relaxedBody(%q) = %q, want %q", c.in, got, c.relaxed)
		}
		if got := string(simpleBody([]byte(c.in))); got != c.simple {
			t.Errorf("simpleBody(%q) = %q, want %q", c.in, got, c.simple)
		}
	}
}

func TestRelaxedHeader(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"Subject", " a: b ", "subject:a: b\r\n"},
		{"Subject", " :x", "subject::x\r\n"},
		{"To", "\r\n\t x ,\r\n  y\r\n", "to:x , y\r\n"},
		{"X", "", "x:\r\n"},
	}
	for _, c := range cases {
		if got := relaxedHeader(c.name, c.value); got != c.want {
			t.Errorf("relaxedHeader(%q, %q) = %q, want %q", c.name, c.value, got, c.want)
		}
	}
}

func TestSplitMessage(t *testing.T) {
	fields, body := splitMessage([]byte("A: 1\r\n folded\r\nnot a field\r\nB:2\n\nbody\r\n"))
	var got []string
	for _, f := range fields {
		got = append(got, fmt.Sprintf("%q=%q", f.name, f.value))
	}
	want := `"A"=" 1\r\n folded\r\n" ""="" "B"="2\n"`
	if strings.Join(got, " ") != want || string(body) != "body\r\n" {
		t.Fatalf("fields %s body %q", strings.Join(got, " "), body)
	}
	if fields, body := splitMessage([]byte("A: 1")); len(fields) != 1 || body != nil {
		t.Fatalf("no blank line: %v %q", fields, body)
	}
}

func TestParseTags(t *testing.T) {
	cases := []struct {
		in   string
		want string // name=value pairs, or the error's text
	}{
		{"", ""},
		{"a=rsa-sha256; b=abc def;", "a=rsa-sha256 b=abc def"},
		{" v = DKIM1 ;\r\n\tp=AB\r\n CD ", "v=DKIM1 p=AB\r\n CD"},
		{"k=", "k="},
		{"h=from : to", "h=from : to"},
		{"a=1; a=2", `tag "a" appears twice`},
		{"1a=b", `bad tag name "1a"`},
		{"a_1=b", "a_1=b"},
		{"a", `no '=' in "a"`},
		{";", "empty tag-spec"},
		{"a=b;;c=d", "empty tag-spec"},
		{"a=b\x01", "bad character"},
		{"a=é", "bad character"},
	}
	for _, c := range cases {
		tags, err := parseTags(c.in)
		var got []string
		for _, tg := range tags {
			got = append(got, tg.name+"="+tg.value)
		}
		s := strings.Join(got, " ")
		if err != nil {
			s = err.Error()
			if !errors.Is(err, errTagSyntax) {
				t.Errorf("%q: error %v does not wrap errTagSyntax", c.in, err)
			}
		}
		if !strings.Contains(s, c.want) || err == nil && s != c.want {
			t.Errorf("parseTags(%q) = %q, want %q", c.in, s, c.want)
		}
	}
}

func TestBlankedSig(t *testing.T) {
	f := newField([]byte("ARC-Seal: i=1; b=abc\r\n def; d=x.test\r\n"))
	tags, err := parseTags(f.value)
	if err != nil {
		t.Fatal(err)
	}
	if got := blankedSig(&f, tags, "relaxed"); got != "arc-seal:i=1; b=; d=x.test" {
		t.Errorf("relaxed: %q", got)
	}
	if got := blankedSig(&f, tags, "simple"); got != "ARC-Seal: i=1; b=; d=x.test" {
		t.Errorf("simple: %q", got)
	}
}

func TestParseKeyRecord(t *testing.T) {
	k := loadKey(t, "rsa2048.pem")
	ed := loadKey(t, "ed25519.pem")
	p := k.record[strings.Index(k.record, "p="):]
	cases := []struct{ rec, want string }{
		{k.record, ""},
		{ed.record, ""},
		{p, ""},
		{"k=rsa; h=sha1:sha256; s=email; " + p, ""},
		{"p=; k=rsa", "revoked"},
		{"k=rsa; h=sha1; " + p, "not sha256"},
		{"s=tls; " + p, "not email"},
		{"k=dsa; " + p, "unknown key type"},
		{"k=rsa; " + p + "; v=DKIM1", "version"},
		{"v=DKIM2; " + p, "version"},
		{"p=!!", "not base64"},
		{"k=ed25519; p=AAAA", "Ed25519 key of 3 bytes"},
		{"k=rsa", "no p="},
		{shortRSARecord(t), "RSA key of 512 bits is too short"},
	}
	for _, c := range cases {
		_, err := parseKeyRecord(c.rec)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseKeyRecord(%.40q…) = %v, want %q", c.rec, err, c.want)
		}
	}
}

// Fields named more than once in h= are taken from the bottom up, and a
// name with none left adds nothing (RFC 6376 §5.4.2).
func TestHeaderSelection(t *testing.T) {
	fields, _ := splitMessage([]byte("A: 1\r\nB: x\r\na: 2\r\n\r\n"))
	got := headerHashInput(fields, []string{"A", "b", "a", "a", "C"}, "relaxed")
	if want := "a:2\r\nb:x\r\na:1\r\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// shortRSARecord publishes a 512-bit RSA key, below RFC 8301's 1024.
func shortRSARecord(t *testing.T) string {
	n := new(big.Int).Lsh(big.NewInt(1), 511)
	n.Add(n, big.NewInt(1))
	return keyRecord(t, &rsa.PublicKey{N: n, E: 65537})
}
