package tlsrpt

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseRecord: ParseRecord never panics; what it accepts begins with
// the version, and every rua it returns parses again as mailto (with
// addresses) or https (with a host), and appears in the record.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"", "v=TLSRPTv1", "v=TLSRPTv1;", "v=TLSRPTv1; rua=mailto:a@example.com",
		"v=TLSRPTv1 ; rua=mailto:a@example.com , https://r.example.com/x ;",
		"v=TLSRPTv1; rua=mailto:a@example.com%2Cb@example.com?subject=x; ext=1",
		"v=TLSRPTv1; rua=https://[::1]:8443/r#frag", "v=TLSRPTv1; rua=mailto:%", "v=TLSRPTv1;;rua=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rua, err := ParseRecord(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, version) || len(rua) == 0 {
			t.Fatalf("%q accepted with rua %q", s, rua)
		}
		for _, u := range rua {
			d, err := parseURI(u)
			if err != nil || (len(d.mailto) == 0) == (d.https == nil) || !strings.Contains(s, u) {
				t.Fatalf("%q: rua %q does not parse again: %+v, %v", s, u, d, err)
			}
			if d.https != nil && d.https.Hostname() == "" {
				t.Fatalf("%q: https rua %q without a host", s, u)
			}
			for _, a := range d.mailto {
				if strings.ContainsAny(a, "\r\n, ") || !isASCII(a) {
					t.Fatalf("%q: mailto address %q", s, a)
				}
			}
		}
	})
}

// FuzzDecodeCounts reads values as the store gives them back: decoding
// never panics, and what decodes merges, counts, encodes and decodes again.
func FuzzDecodeCounts(f *testing.F) {
	var c counts
	countSomeInto(&c)
	v, _, err := c.encode()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{v, "", "{}", `{"policies":null}`, `{"policies":[null]}`, `{"sent":["x","x"]}`,
		`{"policies":[{"policy":{"policy-type":"sts"},"failure-details":[{"result-type":"x","failed-session-count":1}]}]}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := decodeCounts(s)
		if err != nil {
			return
		}
		var sum counts
		sum.merge(got)
		sum.merge(got)
		sum.add(Policy{Domain: "example.test", Type: TypeSTS}, &Failure{}, 1)
		v, _, err := sum.encode()
		if err != nil {
			t.Fatalf("%q: encode after merge: %v", s, err)
		}
		if _, err := decodeCounts(v); err != nil {
			t.Fatalf("%q: encoded %q does not decode: %v", s, v, err)
		}
		if !json.Valid([]byte(v)) {
			t.Fatalf("encoded %q is not JSON", v)
		}
	})
}

// countSomeInto counts into c what countSome counts into a Reporter.
func countSomeInto(c *counts) {
	p := stsPolicy
	p.Domain = "example.test"
	c.add(p, nil, 3)
	c.add(p, &Failure{ResultType: ResultCertificateExpired, ReceivingIP: "198.51.100.1"}, 2)
	c.add(Policy{Domain: "example.test"}, &Failure{ResultType: ResultSTARTTLSNotSupported}, 1)
}
