package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// ecdsaKey makes a key on curve.
func ecdsaKey(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// handshakeWith runs a TLS handshake between a server with certs and a
// default client (no verification), and returns its error.
func handshakeWith(t *testing.T, certs []tls.Certificate) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer a.Close()
		tls.Server(a, &tls.Config{Certificates: certs}).Handshake()
	}()
	err := tls.Client(b, &tls.Config{InsecureSkipVerify: true}).Handshake()
	b.Close()
	<-done
	return err
}

// TestLoadRefusesUnusableCurveInCert (review10b): 4364f3b refuses an
// ecdsa_cert on a curve TLS cannot sign with (P-224), because a
// certificate on it fails the clients it is offered to; but cert takes
// any key (the repository's own testdata cert is ECDSA), and a P-224
// one there passes Load (so serve, check and reload) without a word, then fails every
// STARTTLS handshake: the listener has no other certificate.
func TestLoadRefusesUnusableCurveInCert(t *testing.T) {
	dir := t.TempDir()
	smtptest.WriteKeyPair(t, dir, "p224", ecdsaKey(t, elliptic.P224()))
	path := filepath.Join(dir, "gateway.hcl")
	src := `hostname = "mx.example.test"
listener "mx" {
  address = "127.0.0.1:2525"
  tls {
    cert = "p224-cert.pem"
    key  = "p224-key.pem"
  }
}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err == nil {
		certs, cerr := cfg.Listeners[0].TLS.Certificates()
		if cerr != nil {
			t.Fatal(cerr)
		}
		t.Errorf("Load(a P-224 cert) = nil error, want %s:5:12: Unusable certificate; yet a handshake with it fails: %v",
			path, handshakeWith(t, certs))
	} else if want := path + ":5:12: Unusable certificate"; !strings.Contains(err.Error(), want) {
		t.Errorf("Load(a P-224 cert) = %v, want %q", err, want)
	}
}

// TestLoadReportsEveryUnusablePair (review10b): `gateway check` promises
// every problem in one run, but keyPairs returns before it looks at the
// ecdsa_cert pair whenever cert or key was unreadable: a config with a
// cert path misspelt and an ecdsa_key that is not the ecdsa_cert's gets
// one diagnostic, and the second only once the first is fixed.
func TestLoadReportsEveryUnusablePair(t *testing.T) {
	dir := t.TempDir()
	smtptest.WriteKeyPair(t, dir, "ec", ecdsaKey(t, elliptic.P256()))
	smtptest.WriteKeyPair(t, dir, "other", ecdsaKey(t, elliptic.P256()))
	path := filepath.Join(dir, "gateway.hcl")
	src := `hostname = "mx.example.test"
listener "mx" {
  address = "127.0.0.1:2525"
  tls {
    cert       = "missing.pem"
    key        = "ec-key.pem"
    ecdsa_cert = "ec-cert.pem"
    ecdsa_key  = "other-key.pem"
  }
}
`
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(path)
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Load = %v, want a *config.Error", err)
	}
	for _, want := range []string{path + ":5:18: Unreadable file", path + ":7:18: Unusable certificate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v\nwant a diagnostic %q", err, want)
		}
	}
}
