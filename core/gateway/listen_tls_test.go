package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestLoadTLSOffersECDSAFirst: with ecdsa_cert beside cert, a client that
// takes ECDSA gets the ECDSA certificate and one that takes only RSA (TLS
// 1.2 with ECDHE-RSA suites alone) gets the RSA one.
func TestLoadTLSOffersECDSAFirst(t *testing.T) {
	dir := t.TempDir()
	rsaCert, rsaKey := writeRSACertificate(t, dir)
	ecCert, ecKey := smtptest.WriteCertificate(t, dir)
	cfg, err := LoadTLS(&config.TLS{Cert: rsaCert, Key: rsaKey, ECDSACert: ecCert, ECDSAKey: ecKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client *tls.Config
		want   string // the leaf's public key type
	}{
		{"default client", &tls.Config{InsecureSkipVerify: true}, "*ecdsa.PublicKey"},
		{"TLS 1.2 RSA suites only", &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}, "*rsa.PublicKey"},
	} {
		if got := handshakeKeyType(t, cfg, tc.client); got != tc.want {
			t.Errorf("%s: got a certificate with a %s, want %s", tc.name, got, tc.want)
		}
	}

	// Without ecdsa_cert only the RSA certificate is offered.
	cfg, err = LoadTLS(&config.TLS{Cert: rsaCert, Key: rsaKey})
	if err != nil {
		t.Fatal(err)
	}
	if got := handshakeKeyType(t, cfg, &tls.Config{InsecureSkipVerify: true}); got != "*rsa.PublicKey" {
		t.Errorf("cert alone: got a certificate with a %s, want *rsa.PublicKey", got)
	}

	// An RSA pair named as ecdsa_cert is refused, with its file.
	_, err = LoadTLS(&config.TLS{Cert: rsaCert, Key: rsaKey, ECDSACert: rsaCert, ECDSAKey: rsaKey})
	if want := "tls: ecdsa_cert " + rsaCert + ": its key is *rsa.PrivateKey, not an ECDSA key"; err == nil || err.Error() != want {
		t.Errorf("LoadTLS(RSA as ecdsa_cert) = %v, want %q", err, want)
	}
	_, err = LoadTLS(&config.TLS{Cert: rsaCert, Key: rsaKey, ECDSACert: ecCert, ECDSAKey: rsaKey})
	if err == nil || !strings.HasPrefix(err.Error(), "tls: ecdsa_cert "+ecCert+": ") {
		t.Errorf("LoadTLS(mismatched ECDSA pair) = %v, want an ecdsa_cert error", err)
	}
}

// handshakeKeyType does a TLS handshake over loopback between server and
// client and returns the type of the public key in the server's leaf.
func handshakeKeyType(t *testing.T, server, client *tls.Config) string {
	t.Helper()
	got, err := tryHandshake(t, server, client)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return got
}

// writeRSACertificate writes a self-signed RSA 2048 certificate for
// 127.0.0.1 and its key as rsa-cert.pem and rsa-key.pem in dir.
func writeRSACertificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return smtptest.WriteKeyPair(t, dir, "rsa", key)
}
