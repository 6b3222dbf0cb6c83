package mailauth_test

import (
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/mailauth/mailauthtest"
)

const plain = `From: Alice <alice@signed.test>
To: bob@example.test
Subject: hello
Date: Sun, 06 Dec 2026 10:00:00 +0000

Hello Bob.
`

// TestDKIMDkimpy verifies messages dkimpy signed with rsa-sha256 and
// ed25519-sha256, and fails them once the body changed.
func TestDKIMDkimpy(t *testing.T) {
	mailauthtest.NeedDkimpy(t)
	rsaK, edK := mailauthtest.RSA(t, "r1", "signed.test"), mailauthtest.Ed25519(t, "e1", "signed.test")
	w := newWorld(t, rsaK.Record+edK.Record)
	c := w.checker(t, mailauth.DMARCEnforce, true)
	for _, tc := range []struct {
		name string
		k    mailauthtest.Signer
		sel  string
	}{{"rsa-sha256", rsaK, "r1"}, {"ed25519-sha256", edK, "e1"}} {
		t.Run(tc.name, func(t *testing.T) {
			signed := tc.k.Sign(t, plain)
			// SPF fails (fail.test allows 192.0.2.1 only): DMARC passes by DKIM alone.
			v := check(t, c, input(t, "bounce@fail.test", "client.test", signed))
			want := "Authentication-Results: mx.example.test;\r\n" +
				"\tspf=fail smtp.mailfrom=bounce@fail.test;\r\n" +
				"\tdkim=pass header.b=" + mailauthtest.HeaderB(signed) + " header.d=signed.test header.s=" + tc.sel + ";\r\n" +
				"\tdmarc=pass header.from=signed.test\r\n"
			if string(v.Header) != want {
				t.Errorf("header\n%s\nwant\n%s", v.Header, want)
			}
			if v.Action != mailauth.Accept || v.Results.DMARC.Result != "pass" || v.Results.DMARC.Policy != "reject" {
				t.Errorf("verdict %+v", v)
			}
			if got := v.Results.DKIM; len(got) != 1 || got[0].Result != "pass" || got[0].Domain != "signed.test" || got[0].Selector != tc.sel {
				t.Errorf("dkim results %+v", got)
			}

			changed := strings.Replace(signed, "Hello Bob.", "Hello Bob!", 1)
			v = check(t, c, input(t, "bounce@fail.test", "client.test", changed))
			want = "Authentication-Results: mx.example.test;\r\n" +
				"\tspf=fail smtp.mailfrom=bounce@fail.test;\r\n" +
				"\tdkim=fail reason=\"body hash did not verify\" header.b=" + mailauthtest.HeaderB(signed) + " header.d=signed.test header.s=" + tc.sel + ";\r\n" +
				"\tdmarc=fail header.from=signed.test policy.dmarc=reject\r\n"
			if string(v.Header) != want {
				t.Errorf("header\n%s\nwant\n%s", v.Header, want)
			}
			if v.Action != mailauth.Reject || v.Reply != "DMARC policy of signed.test rejects this message (From: not aligned with a passing SPF or DKIM)" {
				t.Errorf("changed body: action %v reply %q", v.Action, v.Reply)
			}
		})
	}
}
