package mailauth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/message"
)

// BenchmarkCheck is the cost of Check per message with every DNS answer
// cached: SPF pass, one DKIM signature (RSA-2048 or Ed25519) that passes,
// DMARC pass.
//
//	go test -run '^$' -bench Check ./core/mailauth
func BenchmarkCheck(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	edPub, edKey, _ := ed25519.GenerateKey(rand.Reader)
	zone := "r._domainkey.pass.test. 300 IN TXT " + quoted("v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(rsaPub)) + "\n" +
		"e._domainkey.pass.test. 300 IN TXT \"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edPub) + "\"\n"
	w := newWorld(b, zone)
	c, err := mailauth.New(mailauth.Options{SPF: true, DKIM: true, DMARC: "enforce", AuthservID: "mx.example.test", Resolver: w.res})
	if err != nil {
		b.Fatal(err)
	}
	body := "From: a@pass.test\r\nTo: b@example.test\r\nSubject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 25)
	for _, tc := range []struct {
		name string
		opt  dkim.SignOptions
	}{
		{"rsa-2048", dkim.SignOptions{Domain: "pass.test", Selector: "r", Signer: rsaKey}},
		{"ed25519", dkim.SignOptions{Domain: "pass.test", Selector: "e", Signer: edKey}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var signed bytes.Buffer
			if err := dkim.Sign(&signed, strings.NewReader(body), &tc.opt); err != nil {
				b.Fatal(err)
			}
			raw := signed.Bytes()
			h, _, _ := message.ParseHeader(bytes.NewReader(raw))
			m := &mailauth.Message{
				ClientIP: netip.MustParseAddr("127.0.0.1"), HELO: "c.test",
				Sender: envelope.Address{Local: "a", Domain: "pass.test"}, Header: h,
				Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
			}
			v, err := c.Check(context.Background(), m)
			if err != nil || v.Results.DMARC.Result != "pass" || v.Results.DKIM[0].Result != "pass" {
				b.Fatalf("not a pass: %+v %v", v, err)
			}
			asked := w.dns.TotalQueries()
			for b.Loop() {
				c.Check(context.Background(), m)
			}
			if n := w.dns.TotalQueries() - asked; n > 0 {
				b.Errorf("%d DNS queries after the first message: not cached", n)
			}
		})
	}
}

func quoted(v string) string {
	var parts []string
	for len(v) > 255 {
		parts, v = append(parts, `"`+v[:255]+`"`), v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}
