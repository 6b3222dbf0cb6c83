package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

func TestParseRecord(t *testing.T) {
	for _, tc := range []struct {
		txt     string
		want    []string
		wantErr string // a part of the error; "" = no error
	}{
		{txt: "v=TLSRPTv1; rua=mailto:reports@example.com", want: []string{"mailto:reports@example.com"}},
		{txt: "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt", want: []string{"https://reporting.example.com/v1/tlsrpt"}},
		{txt: "v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example.com/x ;", want: []string{"mailto:a@example.com", "https://r.example.com/x"}},
		{txt: "v=TLSRPTv1; ext_1=value; rua=mailto:a@example.com; x.y-z=1", want: []string{"mailto:a@example.com"}},
		{txt: "v=TLSRPTv1; rua=mailto:a@example.com%2Cb@example.com?subject=x", want: []string{"mailto:a@example.com%2Cb@example.com?subject=x"}},
		{txt: "v=TLSRPTv1; rua=ftp://example.com/x,mailto:a@example.com", want: []string{"mailto:a@example.com"}},
		{txt: "v=TLSRPTv1; rua=HTTPS://r.example.com/", want: []string{"HTTPS://r.example.com/"}},
		{
			txt:  "v=TLSRPTv1; rua=mailto:a1@x.test%2Ca2@x.test%2Ca3@x.test%2Ca4@x.test,https://r.test/1,https://r.test/2,https://r.test/3,https://r.test/4,https://r.test/5,https://r.test/6,https://r.test/7,https://r.test/8",
			want: []string{"mailto:a1@x.test%2Ca2@x.test%2Ca3@x.test%2Ca4@x.test", "https://r.test/1", "https://r.test/2", "https://r.test/3", "https://r.test/4", "https://r.test/5", "https://r.test/6"},
		},

		{txt: "", wantErr: "does not begin"},
		{txt: "v=TLSRPTv2; rua=mailto:a@example.com", wantErr: "does not begin"},
		{txt: " v=TLSRPTv1; rua=mailto:a@example.com", wantErr: "does not begin"},
		{txt: "v=tlsrptv1; rua=mailto:a@example.com", wantErr: "does not begin"},
		{txt: "v=TLSRPTv1", wantErr: "no rua"},
		{txt: "v=TLSRPTv1;", wantErr: "no rua"},
		{txt: "v=TLSRPTv1; ext=1", wantErr: "no rua"},
		{txt: "v=TLSRPTv1;; rua=mailto:a@example.com", wantErr: "bad field"},
		{txt: "v=TLSRPTv1; rua", wantErr: "bad field"},
		{txt: "v=TLSRPTv1; rua=", wantErr: "bad field"},
		{txt: "v=TLSRPTv1; _x=1; rua=mailto:a@example.com", wantErr: "bad field"},
		{txt: "v=TLSRPTv1; rua=mailto:a@example.com; rua=mailto:b@example.com", wantErr: "more than one rua"},
		{txt: "v=TLSRPTv1; rua=mailto:", wantErr: "no usable rua"},
		{txt: "v=TLSRPTv1; rua=mailto:not-an-address", wantErr: "no usable rua"},
		{txt: "v=TLSRPTv1; rua=mailto:a@example.com%0D%0ABcc:x@example.com", wantErr: "no usable rua"},
		{txt: "v=TLSRPTv1; rua=mailto:j\xc3\xb6@example.com", wantErr: "no usable rua"},
		{txt: "v=TLSRPTv1; rua=https:///path", wantErr: "no usable rua"},
		{txt: "v=TLSRPTv1; rua=http://r.example.com/", wantErr: "no usable rua"},
		{txt: "v=TLSRPTv1; rua=,", wantErr: "no usable rua"},
	} {
		got, err := ParseRecord(tc.txt)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseRecord(%q) = %q, %v; want an error with %q", tc.txt, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseRecord(%q) = %q, %v; want %q", tc.txt, got, err, tc.want)
		}
	}
}

func TestMailtoAddresses(t *testing.T) {
	d, err := parseURI("mailto:a@example.com%2Cb@example.org?subject=x")
	if err != nil || !slices.Equal(d.mailto, []string{"a@example.com", "b@example.org"}) {
		t.Errorf("parseURI = %q, %v; want the two addresses", d.mailto, err)
	}
	// One mailto naming more than maxTargets addresses goes to the first ones.
	var many []string
	for i := range maxTargets + 2 {
		many = append(many, fmt.Sprintf("a%d@example.com", i))
	}
	dests, err := parseRecord("v=TLSRPTv1; rua=https://r.example.com/, mailto:" + strings.Join(many, "%2C"))
	if err != nil || len(dests) != 2 || !slices.Equal(dests[1].mailto, many[:maxTargets-1]) {
		t.Errorf("parseRecord of %d targets = %+v, %v; want the URL and %d addresses", len(many)+1, dests, err, maxTargets-1)
	}
}

// TestDestinations follows §3: records not beginning "v=TLSRPTv1;" are
// ignored, and anything but exactly one left means no reporting.
func TestDestinations(t *testing.T) {
	res, srv := newResolver(t, `
_smtp._tls.one.test.     300 IN TXT "v=TLSRPTv1; rua=mailto:r@one.test"
_smtp._tls.one.test.     300 IN TXT "v=spf1 -all"
_smtp._tls.split.test.   300 IN TXT "v=TLSRPTv1; rua=mailto:" "r@split.test"
_smtp._tls.two.test.     300 IN TXT "v=TLSRPTv1; rua=mailto:a@two.test"
_smtp._tls.two.test.     300 IN TXT "v=TLSRPTv1 ;rua=mailto:b@two.test"
_smtp._tls.bad.test.     300 IN TXT "v=TLSRPTv1; rua=gopher://x"
_smtp._tls.prefix.test.  300 IN TXT "v=TLSRPTv10; rua=mailto:r@prefix.test"
_smtp._tls.fail.test.    300 IN TXT "v=TLSRPTv1; rua=mailto:r@fail.test"
none.test.               300 IN A 192.0.2.1
`)
	srv.SetFault("_smtp._tls.fail.test.", dns.TypeTXT, resolvertest.ServFail)
	r := New(Options{Resolver: res})
	ctx := context.Background()
	for _, tc := range []struct {
		domain string
		want   string // the addresses, or "none" for errNoRecord, "temp" for another error
	}{
		{"one.test", "r@one.test"},
		{"split.test", "r@split.test"},
		{"two.test", "none"},
		{"bad.test", "none"},
		{"prefix.test", "none"},
		{"none.test", "none"},
		{"nxdomain.test", "none"},
		{"fail.test", "temp"},
	} {
		dests, err := r.destinations(ctx, tc.domain)
		var got string
		switch {
		case errors.Is(err, errNoRecord):
			got = "none"
		case err != nil:
			got = "temp"
		default:
			for _, d := range dests {
				got += strings.Join(d.mailto, ",")
			}
		}
		if got != tc.want {
			t.Errorf("destinations(%s) = %q (%v); want %q", tc.domain, got, err, tc.want)
		}
	}
}
