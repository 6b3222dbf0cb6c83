package envelope

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParsePath(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		name      string
		in        string
		allowNull bool
		utf8      bool
		want      Address
		wantRest  string
		wantErr   bool
	}{
		{name: "simple", in: "<user@example.com>", want: Address{"user", "example.com"}},
		{name: "rest kept", in: "<user@example.com> SIZE=10", want: Address{"user", "example.com"}, wantRest: " SIZE=10"},
		{name: "case kept", in: "<User.Name@Example.COM>", want: Address{"User.Name", "Example.COM"}},
		{name: "atext specials", in: "<!#$%&'*+-/=?^_`{|}~@x.y>", want: Address{"!#$%&'*+-/=?^_`{|}~", "x.y"}},
		{name: "dotted local", in: "<a.b.c@d>", want: Address{"a.b.c", "d"}},
		{name: "single label domain", in: "<a@localhost>", want: Address{"a", "localhost"}},
		{name: "digit labels", in: "<a@123.45>", want: Address{"a", "123.45"}},
		{name: "inner hyphens", in: "<a@x-y--z.example>", want: Address{"a", "x-y--z.example"}},
		{name: "quoted local", in: `<"john doe"@example.com>`, want: Address{`"john doe"`, "example.com"}},
		{name: "quoted pair", in: `<"a\"b\\c"@d>`, want: Address{`"a\"b\\c"`, "d"}},
		{name: "quoted with at", in: `<"a@b"@d>`, want: Address{`"a@b"`, "d"}},
		{name: "empty quoted", in: `<""@d>`, want: Address{`""`, "d"}},
		{name: "null allowed", in: "<>", allowNull: true, want: Address{}},
		{name: "null rest", in: "<> BODY=8BITMIME", allowNull: true, want: Address{}, wantRest: " BODY=8BITMIME"},
		{name: "ipv4 literal", in: "<user@[192.0.2.1]>", want: Address{"user", "[192.0.2.1]"}},
		{name: "ipv6 literal", in: "<user@[IPv6:2001:db8::1]>", want: Address{"user", "[IPv6:2001:db8::1]"}},
		{name: "ipv6 loopback", in: "<user@[IPv6:::1]>", want: Address{"user", "[IPv6:::1]"}},
		{name: "ipv6 tag any case", in: "<user@[ipv6:::1]>", want: Address{"user", "[ipv6:::1]"}},
		{name: "ipv6 embedded v4", in: "<user@[IPv6:::ffff:192.0.2.1]>", want: Address{"user", "[IPv6:::ffff:192.0.2.1]"}},
		{name: "source route", in: "<@a.example,@b.example:user@d.example>", want: Address{"user", "d.example"}},
		{name: "source route one hop", in: "<@a:user@d> X", want: Address{"user", "d"}, wantRest: " X"},
		{name: "local 64", in: "<" + strings.Repeat("l", 64) + "@d>", want: Address{strings.Repeat("l", 64), "d"}},
		{name: "label 63", in: "<a@" + long63 + ".com>", want: Address{"a", long63 + ".com"}},
		{name: "domain 255", in: "<a@" + long63 + "." + long63 + "." + long63 + "." + strings.Repeat("b", 63) + ">",
			want: Address{"a", long63 + "." + long63 + "." + long63 + "." + strings.Repeat("b", 63)}},
		{name: "utf8 local", in: "<jösé@example.com>", utf8: true, want: Address{"jösé", "example.com"}},
		{name: "utf8 domain", in: "<user@bücher.example>", utf8: true, want: Address{"user", "bücher.example"}},
		{name: "utf8 quoted", in: `<"ü ü"@d>`, utf8: true, want: Address{`"ü ü"`, "d"}},
		{name: "utf8 cjk", in: "<用户@例子.广告>", utf8: true, want: Address{"用户", "例子.广告"}},

		{name: "empty", in: "", wantErr: true},
		{name: "no brackets", in: "user@example.com", wantErr: true},
		{name: "no closing bracket", in: "<user@example.com", wantErr: true},
		{name: "leading space", in: " <a@b>", wantErr: true},
		{name: "space inside", in: "< a@b>", wantErr: true},
		{name: "space before close", in: "<a@b >", wantErr: true},
		{name: "null not allowed", in: "<>", wantErr: true},
		{name: "no domain", in: "<user>", wantErr: true},
		{name: "no domain postmaster", in: "<postmaster>", wantErr: true},
		{name: "empty domain", in: "<user@>", wantErr: true},
		{name: "empty local", in: "<@example.com>", wantErr: true},
		{name: "two ats", in: "<a@b@c>", wantErr: true},
		{name: "leading dot", in: "<.a@b>", wantErr: true},
		{name: "trailing dot", in: "<a.@b>", wantErr: true},
		{name: "double dot", in: "<a..b@c>", wantErr: true},
		{name: "domain trailing dot", in: "<a@b.c.>", wantErr: true},
		{name: "domain leading dot", in: "<a@.b>", wantErr: true},
		{name: "domain double dot", in: "<a@b..c>", wantErr: true},
		{name: "label leading hyphen", in: "<a@-b.c>", wantErr: true},
		{name: "label trailing hyphen", in: "<a@b-.c>", wantErr: true},
		{name: "underscore domain", in: "<a@b_c.d>", wantErr: true},
		{name: "local 65", in: "<" + strings.Repeat("l", 65) + "@d>", wantErr: true},
		{name: "label 64", in: "<a@" + long63 + "a.com>", wantErr: true},
		{name: "domain 256", in: "<a@" + long63 + "." + long63 + "." + long63 + "." + strings.Repeat("b", 63) + "c>", wantErr: true},
		{name: "control char", in: "<a\x01b@c>", wantErr: true},
		{name: "nul", in: "<a\x00@c>", wantErr: true},
		{name: "comma local", in: "<a,b@c>", wantErr: true},
		{name: "quoted unterminated", in: `<"abc@d>`, wantErr: true},
		{name: "quoted control", in: "<\"a\tb\"@d>", wantErr: true},
		{name: "quoted pair control", in: "<\"a\\\x01\"@d>", wantErr: true},
		{name: "quote in middle", in: `<a"b"@d>`, wantErr: true},
		{name: "bad ipv4", in: "<a@[192.0.2.256]>", wantErr: true},
		{name: "short ipv4", in: "<a@[192.0.2]>", wantErr: true},
		{name: "ipv6 without tag", in: "<a@[::1]>", wantErr: true},
		{name: "ipv4 in ipv6 tag", in: "<a@[IPv6:192.0.2.1]>", wantErr: true},
		{name: "ipv6 zone", in: "<a@[IPv6:fe80::1%eth0]>", wantErr: true},
		{name: "bad ipv6", in: "<a@[IPv6:1:2:3]>", wantErr: true},
		{name: "general literal", in: "<a@[x400:foo]>", wantErr: true},
		{name: "empty literal", in: "<a@[]>", wantErr: true},
		{name: "unclosed literal", in: "<a@[1.2.3.4>", wantErr: true},
		{name: "text after literal", in: "<a@[1.2.3.4]x>", wantErr: true},
		{name: "utf8 without flag", in: "<jösé@example.com>", wantErr: true},
		{name: "utf8 domain without flag", in: "<user@bücher.example>", wantErr: true},
		{name: "invalid utf8", in: "<a\xff@b>", utf8: true, wantErr: true},
		{name: "invalid utf8 domain", in: "<a@b\xc3>", utf8: true, wantErr: true},
		{name: "invalid utf8 quoted", in: "<\"\xc3\"@b>", utf8: true, wantErr: true},
		{name: "route without colon", in: "<@a,@b user@d>", wantErr: true},
		{name: "route empty domain", in: "<@,@b:user@d>", wantErr: true},
		{name: "route literal", in: "<@[1.2.3.4]:user@d>", wantErr: true},
		{name: "route bad separator", in: "<@a;@b:user@d>", wantErr: true},
		{name: "route only", in: "<@a:>", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rest, err := ParsePath(tt.in, tt.allowNull, tt.utf8)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParsePath(%q) = %+v, %q, nil; want error", tt.in, got, rest)
				}
				if !errors.Is(err, ErrBadAddress) {
					t.Errorf("ParsePath(%q) error %v does not wrap ErrBadAddress", tt.in, err)
				}
				if !strings.HasPrefix(err.Error(), "envelope: ") {
					t.Errorf("error %q lacks the envelope: prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParsePath(%q) address mismatch (-want +got):\n%s", tt.in, diff)
			}
			if rest != tt.wantRest {
				t.Errorf("ParsePath(%q) rest = %q, want %q", tt.in, rest, tt.wantRest)
			}
		})
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Address
		wantErr bool
	}{
		{name: "simple", in: "user@example.com", want: Address{"user", "example.com"}},
		{name: "quoted", in: `"a b"@c`, want: Address{`"a b"`, "c"}},
		{name: "literal", in: "a@[10.0.0.1]", want: Address{"a", "[10.0.0.1]"}},
		{name: "utf8", in: "ü@ü.example", want: Address{"ü", "ü.example"}},
		{name: "empty", in: "", wantErr: true},
		{name: "brackets", in: "<a@b>", wantErr: true},
		{name: "trailing space", in: "a@b ", wantErr: true},
		{name: "trailing text", in: "a@b>", wantErr: true},
		{name: "no domain", in: "postmaster", wantErr: true},
		{name: "invalid utf8", in: "a@\xff", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddress(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseAddress(%q) = %+v, want error", tt.in, got)
				}
				if !errors.Is(err, ErrBadAddress) {
					t.Errorf("ParseAddress(%q) error %v does not wrap ErrBadAddress", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddress(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseAddress(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestAddressErrorMessage(t *testing.T) {
	_, _, err := ParsePath("<a..b@c>", false, false)
	var ae *AddressError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an *AddressError", err)
	}
	want := `envelope: bad address "<a..b@c>": local part: empty atom (leading or double dot)`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	long := "<" + strings.Repeat("x", 200)
	_, _, err = ParsePath(long, false, false)
	if len(err.Error()) > 200 {
		t.Errorf("error for a long input is not truncated: %d bytes", len(err.Error()))
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"<user@example.com>", "<>", "<> SIZE=1", `<"a b\"c"@d>`, "<a@[192.0.2.1]>",
		"<a@[IPv6:2001:db8::1]>", "<@a,@b:user@d>", "<jösé@bücher.example>",
		"<a..b@c>", "<a@b.>", "<a@-b>", "<a@[::1]>", "<\"\xc3\"@b>", "<" + strings.Repeat("a", 65) + "@b>",
	} {
		f.Add(s, true, true)
		f.Add(s, false, false)
	}
	f.Fuzz(func(t *testing.T, s string, allowNull, utf8OK bool) {
		a, rest, err := ParsePath(s, allowNull, utf8OK)
		if err != nil {
			if !errors.Is(err, ErrBadAddress) {
				t.Fatalf("error %v does not wrap ErrBadAddress", err)
			}
			// Without utf8 the only extra reason to fail is non-ASCII.
			if _, _, err2 := ParsePath(s, allowNull, true); !utf8OK && err2 == nil && isASCII(s) {
				t.Fatalf("ASCII path %q rejected only without utf8: %v", s, err)
			}
			return
		}
		if !strings.HasSuffix(s, rest) {
			t.Fatalf("rest %q is not a suffix of %q", rest, s)
		}
		if a.IsNull() {
			if !allowNull {
				t.Fatalf("null path accepted with allowNull=false: %q", s)
			}
			if !strings.HasPrefix(s, "<>") {
				t.Fatalf("null address from %q", s)
			}
			return
		}
		if len(a.Local) == 0 || len(a.Local) > MaxLocalLength {
			t.Fatalf("local part %q has bad length", a.Local)
		}
		if len(a.Domain) == 0 || len(a.Domain) > MaxDomainLength {
			t.Fatalf("domain %q has bad length", a.Domain)
		}
		str := a.String()
		if !utf8.ValidString(str) {
			t.Fatalf("address %q is not valid UTF-8", str)
		}
		if !utf8OK {
			for i := 0; i < len(str); i++ {
				if str[i] >= 0x80 {
					t.Fatalf("non-ASCII address %q accepted without utf8", str)
				}
			}
		}
		if strings.ContainsAny(str, "\r\n\x00<> ") && !strings.HasPrefix(a.Local, `"`) {
			t.Fatalf("address %q holds a delimiter", str)
		}
		// The canonical forms re-parse to the same address.
		b, err := ParseAddress(str)
		if err != nil {
			t.Fatalf("ParseAddress(%q) of a parsed address: %v", str, err)
		}
		if b != a {
			t.Fatalf("ParseAddress(%q) = %+v, want %+v", str, b, a)
		}
		c, rest2, err := ParsePath(a.Path(), false, utf8OK)
		if err != nil || c != a || rest2 != "" {
			t.Fatalf("ParsePath(%q) = %+v, %q, %v; want %+v", a.Path(), c, rest2, err, a)
		}
		// Accepting UTF-8 never changes how an ASCII path parses.
		if !utf8OK {
			d, rest3, err := ParsePath(s, allowNull, true)
			if err != nil || d != a || rest3 != rest {
				t.Fatalf("ParsePath(%q, utf8) = %+v, %q, %v; want %+v, %q", s, d, rest3, err, a, rest)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestValidHost(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"client.test", true},
		{"Client-1.EXAMPLE.test", true},
		{"localhost", true},
		{"[192.0.2.1]", true},
		{"[IPv6:2001:db8::1]", true},
		{"", false},
		{"client.test.", false},
		{"client_1.test", false},
		{"evil.test) by trusted.example.test", false},
		{"bücher.test", false},
		{"[192.0.2.300]", false},
		{"[2001:db8::1]", false},
		{"[]", false},
		{"[client.test]", false},
		{"-client.test", false},
	} {
		if got := ValidHost(tc.in); got != tc.want {
			t.Errorf("ValidHost(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
