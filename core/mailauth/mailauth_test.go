package mailauth_test

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// zone is the DNS the tests see. 127.0.0.1 is the client; sender domains
// publish SPF records for each result, and DMARC records.
const zone = `
pass.test.        300 IN TXT "v=spf1 ip4:127.0.0.1 -all"
fail.test.        300 IN TXT "v=spf1 ip4:192.0.2.1 -all"
softfail.test.    300 IN TXT "v=spf1 ~all"
neutral.test.     300 IN TXT "v=spf1 ?all"
none.test.        300 IN A   192.0.2.9
permerror.test.   300 IN TXT "v=spf1 include:a.permerror.test include:b.permerror.test include:c.permerror.test include:d.permerror.test include:e.permerror.test include:f.permerror.test -all"
a.permerror.test. 300 IN TXT "v=spf1 a:x1.permerror.test a:x2.permerror.test -all"
b.permerror.test. 300 IN TXT "v=spf1 a:x1.permerror.test a:x2.permerror.test -all"
c.permerror.test. 300 IN TXT "v=spf1 a:x1.permerror.test a:x2.permerror.test -all"
d.permerror.test. 300 IN TXT "v=spf1 -all"
e.permerror.test. 300 IN TXT "v=spf1 -all"
f.permerror.test. 300 IN TXT "v=spf1 -all"
x1.permerror.test. 300 IN A 192.0.2.1
x2.permerror.test. 300 IN A 192.0.2.2
void.test.        300 IN TXT "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"
temperror.test.   300 IN TXT "v=spf1 -all"
helo.pass.test.   300 IN TXT "v=spf1 a -all"
helo.pass.test.   300 IN A   127.0.0.1

_dmarc.pass.test.     300 IN TXT "v=DMARC1; p=reject"
_dmarc.fail.test.     300 IN TXT "v=DMARC1; p=reject"
_dmarc.softfail.test. 300 IN TXT "v=DMARC1; p=quarantine"
_dmarc.neutral.test.  300 IN TXT "v=DMARC1; p=none"
_dmarc.signed.test.   300 IN TXT "v=DMARC1; p=reject; adkim=s"
_dmarc.example.com.   300 IN TXT "v=DMARC1; p=reject; sp=quarantine"
_dmarc.temperror.test. 300 IN TXT "v=DMARC1; p=reject"
_dmarc.half.test.     300 IN TXT "v=DMARC1; p=reject; pct=50"
`

type world struct {
	dns *resolvertest.Server
	res *resolver.Resolver
}

func newWorld(t testing.TB, extra string) *world {
	t.Helper()
	s := resolvertest.Start(t, zone+extra)
	r, err := resolver.New(resolver.Options{Servers: []string{s.Addr()}, Timeout: 500 * 1e6, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.SetFault("temperror.test.", 16, resolvertest.ServFail) // TXT
	return &world{dns: s, res: r}
}

func (w *world) checker(t testing.TB, dmarc string, sample bool) *mailauth.Checker {
	t.Helper()
	c, err := mailauth.New(mailauth.Options{
		SPF: true, DKIM: true, DMARC: dmarc, AuthservID: "mx.example.test", Resolver: w.res,
		Sample: func(int) bool { return sample },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// input makes the Check input for raw (LF line ends become CRLF).
func input(t *testing.T, sender, helo, raw string) *mailauth.Message {
	t.Helper()
	raw = strings.ReplaceAll(strings.ReplaceAll(raw, "\r\n", "\n"), "\n", "\r\n")
	h, _, err := message.ParseHeader(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var from envelope.Address
	if sender != "" {
		if from, err = envelope.ParseAddress(sender); err != nil {
			t.Fatal(err)
		}
	}
	return &mailauth.Message{
		ClientIP: netip.MustParseAddr("127.0.0.1"), HELO: helo, Sender: from, Header: h,
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(raw)), nil },
	}
}

func check(t *testing.T, c *mailauth.Checker, m *mailauth.Message) *mailauth.Verdict {
	t.Helper()
	v, err := c.Check(context.Background(), m)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return v
}

func TestSPF(t *testing.T) {
	w := newWorld(t, "")
	c, err := mailauth.New(mailauth.Options{SPF: true, AuthservID: "mx.example.test", Resolver: w.res})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ sender, helo, want, header string }{
		{"a@pass.test", "client.test", "pass", "spf=pass smtp.mailfrom=a@pass.test"},
		{"a@fail.test", "client.test", "fail", "spf=fail smtp.mailfrom=a@fail.test"},
		{"a@softfail.test", "client.test", "softfail", "spf=softfail smtp.mailfrom=a@softfail.test"},
		{"a@neutral.test", "client.test", "neutral", "spf=neutral smtp.mailfrom=a@neutral.test"},
		{"a@none.test", "client.test", "none", "spf=none smtp.mailfrom=a@none.test"},
		{"a@nxdomain.test", "client.test", "none", "spf=none smtp.mailfrom=a@nxdomain.test"},
		{"a@permerror.test", "client.test", "permerror", "spf=permerror smtp.mailfrom=a@permerror.test"},
		{"a@void.test", "client.test", "permerror", "spf=permerror smtp.mailfrom=a@void.test"},
		{"a@temperror.test", "client.test", "temperror", "spf=temperror smtp.mailfrom=a@temperror.test"},
		{"", "helo.pass.test", "pass", "spf=pass smtp.helo=helo.pass.test"},
		{"", "[127.0.0.1]", "none", "spf=none smtp.helo=[127.0.0.1]"},
	} {
		t.Run(tc.want+"/"+tc.sender+tc.helo, func(t *testing.T) {
			v := check(t, c, input(t, tc.sender, tc.helo, "From: a@pass.test\n\nhi\n"))
			if v.Results.SPF.Result != tc.want {
				t.Errorf("spf = %q, want %q", v.Results.SPF.Result, tc.want)
			}
			want := "Authentication-Results: mx.example.test;\r\n\t" + tc.header + "\r\n"
			if string(v.Header) != want {
				t.Errorf("header\n%q\nwant\n%q", v.Header, want)
			}
			if v.Action != mailauth.Accept {
				t.Errorf("action %v without DMARC", v.Action)
			}
		})
	}
}
