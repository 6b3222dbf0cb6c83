package smtptest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp"
)

// Hostname is the server name StartServer uses when Options has none.
const Hostname = "mx.test"

// StartServer runs an smtp.Server with opt on 127.0.0.1:0 and returns its
// address and the server. A nil Spool becomes a MemorySpool, an empty
// Hostname becomes Hostname, a nil Log logs to t at info level. The server
// is shut down at the end of the test; the test fails if Serve returned
// anything but net.ErrClosed.
func StartServer(t testing.TB, opt smtp.Options) (string, *smtp.Server) {
	t.Helper()
	if opt.Hostname == "" {
		opt.Hostname = Hostname
	}
	if opt.Spool == nil {
		opt.Spool = &MemorySpool{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	srv, err := smtp.NewServer(opt)
	if err != nil {
		t.Fatalf("smtptest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("smtptest: shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, net.ErrClosed) {
			t.Errorf("smtptest: Serve returned %v, want net.ErrClosed", err)
		}
	})
	return ln.Addr().String(), srv
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

var _ io.Writer = testWriter{}

// TLSConfigs returns a server config with a fresh self-signed certificate
// for 127.0.0.1 and Hostname, and a client config that trusts it.
func TLSConfigs(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key := newKey(t)
	der := newCertificate(t, key)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("smtptest: certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}

// WriteCertificate writes a fresh self-signed certificate for 127.0.0.1
// and Hostname, and its key, as PEM files cert.pem and key.pem in dir (a
// listener's tls block; the certificate is its own CA, for a client's
// trust) and returns their paths.
func WriteCertificate(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	return writePair(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), newKey(t))
}

// WriteKeyPair is WriteCertificate with key (RSA, Ed25519, ECDSA on any
// curve: tests of what a listener takes), as name-cert.pem and
// name-key.pem.
func WriteKeyPair(t testing.TB, dir, name string, key crypto.Signer) (certFile, keyFile string) {
	t.Helper()
	return writePair(t, filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem"), key)
}

// writePair writes a new self-signed certificate for key and the key.
func writePair(t testing.TB, certFile, keyFile string, key crypto.Signer) (string, string) {
	t.Helper()
	der := newCertificate(t, key)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("smtptest: key: %v", err)
	}
	for _, f := range []struct {
		path string
		pem  *pem.Block
	}{
		{certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der}},
		{keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(f.pem), 0o600); err != nil {
			t.Fatalf("smtptest: %v", err)
		}
	}
	return certFile, keyFile
}

// newKey makes a P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("smtptest: key: %v", err)
	}
	return key
}

// newCertificate makes a self-signed certificate of key for 127.0.0.1
// and Hostname, valid from an hour ago for a day.
func newCertificate(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: Hostname},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{Hostname},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("smtptest: certificate: %v", err)
	}
	return der
}

// Loopback returns 127.0.0.1/32, for Options.RelayNetworks.
func Loopback() netip.Prefix { return netip.MustParsePrefix("127.0.0.1/32") }
