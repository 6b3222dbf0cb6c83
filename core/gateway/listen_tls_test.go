package gateway

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(c, server).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), client)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return fmt.Sprintf("%T", c.ConnectionState().PeerCertificates[0].PublicKey)
}

// writeRSACertificate writes a self-signed RSA 2048 certificate for
// 127.0.0.1 and its key as rsa-cert.pem and rsa-key.pem in dir.
func writeRSACertificate(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "rsa-cert.pem"), filepath.Join(dir, "rsa-key.pem")
	for file, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}
