package mailauth_test

import (
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/mailauth"
)

// FuzzHeaderParsers feeds header values from outside to the parsers of
// this package: the authserv-id of an Authentication-Results, the domains
// of a From:, a DKIM tag list. None may panic; what they return must be
// plain.
func FuzzHeaderParsers(f *testing.F) {
	for _, s := range []string{
		"mx.example.test; spf=pass", `(c) "mx.example.test" 1; none`, "((a\\)b) x;",
		"Alice <a@example.test>, b@Example.TEST.", "=?x-unknown?q?A?= <a@b.test>", "<<a@b.test", "undisclosed:;",
		"v=1; a=rsa-sha256; d=example.test; s=s1; b=abc", ";;=;x=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		id := mailauth.AuthservID(v)
		if strings.ContainsAny(id, " \t\r\n;") && !strings.Contains(v, `"`) {
			t.Errorf("AuthservID(%q) = %q", v, id)
		}
		for _, d := range mailauth.AddressDomains(v) {
			if d == "" || d != strings.TrimSuffix(d, ".") {
				t.Errorf("AddressDomains(%q) has %q", v, d)
			}
		}
		for k := range mailauth.ParseTags(v) {
			if k == "" || k != strings.TrimSpace(k) {
				t.Errorf("ParseTags(%q) has tag %q", v, k)
			}
		}
	})
}
