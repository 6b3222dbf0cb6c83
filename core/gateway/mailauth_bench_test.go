package gateway_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// BenchmarkAcceptAuthentication is the accept throughput of the durable
// server (fsync'd spool, next hop down) under smtptest's load, with the
// authentication block off and on (dmarc = "enforce"). The sender's domain
// publishes SPF and DMARC, the messages carry an RSA-2048 DKIM signature,
// and the DNS answers are cached after the first message:
//
//	go test -run '^$' -bench AcceptAuthentication -count 5 ./core/gateway
func BenchmarkAcceptAuthentication(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	var signed bytes.Buffer
	if err := dkim.Sign(&signed, bytes.NewReader(smtptest.BenchBody()), &dkim.SignOptions{
		Domain: "example.org", Selector: "s1", Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	}); err != nil {
		b.Fatal(err)
	}
	zone := `
example.org.              3600 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.example.org.       3600 IN TXT "v=DMARC1; p=reject"
s1._domainkey.example.org. 3600 IN TXT "v=DKIM1; k=rsa; p=` + splitTXT(base64.StdEncoding.EncodeToString(pub)) + `"
`
	for _, tc := range []struct{ name, block string }{
		{"off", ""},
		{"on", "authentication {\n  dmarc = \"enforce\"\n}\n"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dns := resolvertest.Start(b, zone)
			g := gatewaytest.Start(b, `
hostname = "mx.example.test"
listener "mx" {
  address                = "127.0.0.1:0"
  max_connections_per_ip = 200
}
domains = ["example.test"]
`+tc.block+`
delivery {
  resolver = "`+dns.Addr()+`"
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}
log { level = "warn" }
`)
			smtptest.BenchLoad(b, g.Addr(b, "mx"), signed.Bytes())
			if tc.block != "" {
				const want = "spf=pass smtp.mailfrom=sender@example.org;\r\n\tdkim=pass"
				if msgs := g.Queued(b); len(msgs) == 0 || !bytes.Contains(msgs[0].Data, []byte(want)) ||
					!bytes.Contains(msgs[0].Data, []byte("dmarc=pass header.from=example.org")) {
					b.Fatalf("the messages were not checked as they should be")
				}
			}
		})
	}
}

// splitTXT writes a long TXT value as 255-octet strings.
func splitTXT(v string) string {
	var out string
	for len(v) > 255 {
		out, v = out+v[:255]+`" "`, v[255:]
	}
	return out + v
}
