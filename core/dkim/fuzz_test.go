package dkim

import (
	"strings"
	"testing"
)

// FuzzSign signs arbitrary messages: never a panic or an error, and a
// signature made verifies with go-msgauth.
func FuzzSign(f *testing.F) {
	f.Add(rfc8463Message)
	f.Add("From: a@example.test\r\n\r\n")
	f.Add("From: \"x\" <a@sub.example.test>, b@example.test\r\nTo: c\r\n \r\n\r\nbody  \r\n\r\n")
	f.Add("From: a@example.test")
	f.Add("no header at all\r\n")
	k, err := ParseKey(rfc8463Key(f))
	if err != nil {
		f.Fatal(err)
	}
	ks, _ := NewKeys([]Domain{{Name: "example.test", Selector: "s", Key: k}})
	dns := recordsOf("s._domainkey.example.test", k)
	f.Fuzz(func(t *testing.T, msg string) {
		field, d, err := ks.Sign(strings.NewReader(msg))
		if err != nil {
			t.Fatalf("Sign(%q): %v", msg, err) // nothing to read can fail here
		}
		if d == nil {
			return
		}
		if !strings.HasPrefix(field, "DKIM-Signature: ") || !strings.HasSuffix(field, "\r\n") {
			t.Fatalf("field %q", field)
		}
		if !strings.Contains(msg, "\r\n\r\n") || strings.ContainsAny(strings.ReplaceAll(msg, "\r\n", ""), "\r\n") {
			return // the verifier reads only well-formed CRLF messages, as the spool holds
		}
		errs, err := verifyAll(field+msg, dns)
		if err != nil || len(errs) != 1 || errs[0] != nil {
			t.Fatalf("signed %q: %v %v", msg, err, errs)
		}
	})
}
