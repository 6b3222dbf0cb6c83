package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestReloadRereadsCertificates: a reload serves a listener's renewed
// certificate (new files at the same paths) from the next handshake on,
// without a restart; a reload that finds the files damaged fails, naming
// the line of the pair, and the certificate it had is served on.
func TestReloadRereadsCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, _ := smtptest.WriteCertificate(t, dir)
	g := startTLSGateway(t, dir, gatewaytest.DeadRoute)
	addr := g.Addr(t, "mx")
	first := starttlsLeaf(t, addr)

	smtptest.WriteCertificate(t, dir) // renewed: a new key and certificate
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	renewed := starttlsLeaf(t, addr)
	if renewed.Equal(first) {
		t.Fatal("after the reload the listener still serves the certificate it started with")
	}

	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := g.Reload(context.Background())
	if want := "gateway.hcl:6:12: Unusable certificate"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("reload with a damaged certificate = %v, want an error with %q", err, want)
	}
	if got := starttlsLeaf(t, addr); !got.Equal(renewed) {
		t.Error("a reload that could not read the certificate stopped serving the one it had")
	}
}

// startTLSGateway runs a gateway from dir/gateway.hcl: listener "mx"
// offering STARTTLS with dir's cert.pem and key.pem, and extra.
func startTLSGateway(t *testing.T, dir, extra string) *gatewaytest.Gateway {
	t.Helper()
	return gatewaytest.StartFile(t, writeFile(t, dir, "gateway.hcl", `
hostname = "mx.test"
listener "mx" {
  address = "127.0.0.1:0"
  tls {
    cert = "cert.pem"
    key  = "key.pem"
  }
}
domains = ["example.test"]
`+extra))
}

// starttlsLeaf says EHLO and STARTTLS to addr and returns the certificate
// the server showed.
func starttlsLeaf(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	ctx := context.Background()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(ctx, &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	cs, _ := c.TLSConnectionState()
	return cs.PeerCertificates[0]
}
