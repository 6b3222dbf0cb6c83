package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestLoadTLSRSAOnlyClientOtherName: a client that takes only RSA still
// gets the RSA certificate when its SNI names a host neither certificate
// covers (an SMTP client sends the MX name it looked up, which a
// listener's certificates often do not carry, and verifies nothing
// under opportunistic TLS). LoadTLS's doc promises that "the RSA one
// stays for clients that take only RSA", and with cert alone such a
// client gets through. But crypto/tls picks, among several
// Certificates, the first the client supports *and whose names cover
// its SNI*, else the first one whatever the client supports: the ECDSA
// one, so the handshake fails (no cipher suite in common) where before
// ecdsa_cert it succeeded.
func TestLoadTLSRSAOnlyClientOtherName(t *testing.T) {
	dir := t.TempDir()
	rsaCert, rsaKey := writeRSACertificate(t, dir) // for 127.0.0.1
	ecCert, ecKey := smtptest.WriteCertificate(t, dir)
	rsaOnly := &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	for _, tc := range []struct {
		name string
		tls  config.TLS
	}{
		{"cert alone", config.TLS{Cert: rsaCert, Key: rsaKey}},
		{"cert and ecdsa_cert", config.TLS{Cert: rsaCert, Key: rsaKey, ECDSACert: ecCert, ECDSAKey: ecKey}},
	} {
		for _, sni := range []string{"", "mx.elsewhere.test"} {
			t.Run(fmt.Sprintf("%s/SNI %q", tc.name, sni), func(t *testing.T) {
				server, err := LoadTLS(&tc.tls)
				if err != nil {
					t.Fatal(err)
				}
				client := rsaOnly.Clone()
				client.ServerName = sni
				got, err := tryHandshake(t, server, client)
				if err != nil || got != "*rsa.PublicKey" {
					t.Errorf("RSA-only client: handshake = %q, %v; want the RSA certificate", got, err)
				}
			})
		}
	}
}

// tryHandshake is handshakeKeyType that returns the handshake's error
// instead of failing the test.
func tryHandshake(t *testing.T, server, client *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(c, server).Handshake()
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), client)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return fmt.Sprintf("%T", c.ConnectionState().PeerCertificates[0].PublicKey), nil
}

// TestLoadTLSRefusesUnusableECDSACurve: an ecdsa_cert whose key is on a
// curve TLS clients do not offer (P-224; TLS 1.3 has no signature scheme
// for it at all) is refused with its file, as an RSA or Ed25519 one is.
// LoadTLS takes it, and it does harm: crypto/tls never picks it for a
// client it matches by curve, so the RSA certificate serves the clients
// that send no SNI, and a client whose SNI neither certificate covers is
// given the P-224 one (the first, the fall-back), so its TLS 1.3
// handshake fails where it went through with cert alone.
func TestLoadTLSRefusesUnusableECDSACurve(t *testing.T) {
	dir := t.TempDir()
	rsaCert, rsaKey := writeRSACertificate(t, dir)
	key, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecCert, ecKey := smtptest.WriteKeyPair(t, dir, "p224", key)
	_, err = LoadTLS(&config.TLS{Cert: rsaCert, Key: rsaKey, ECDSACert: ecCert, ECDSAKey: ecKey})
	if err == nil || !strings.Contains(err.Error(), ecCert) {
		t.Errorf("LoadTLS(a P-224 ecdsa_cert) = %v, want an error naming %s", err, ecCert)
	}
}
