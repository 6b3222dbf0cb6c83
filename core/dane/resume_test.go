package dane_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/dane"
)

// serveResumable runs a TLS server on 127.0.0.1:0 at version only that
// presents leaf, writes one byte after each handshake (so that a TLS 1.3
// client reads its session ticket) and sends whether each handshake
// resumed a session, as its VerifyConnection sees it (which runs before
// the client's last flight, so a resumption the client refuses counts).
func serveResumable(t *testing.T, version uint16, leaf *ident) (addr string, resumed <-chan bool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan bool, 16)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.cert.Raw}, PrivateKey: leaf.key}},
		MinVersion:   version, MaxVersion: version,
		VerifyConnection: func(cs tls.ConnectionState) error {
			seen <- cs.DidResume
			return nil
		},
	}
	return acceptTLS(t, l, cfg), seen
}

// dialResumable handshakes with addr under cfg and reads the server's
// byte; it returns the handshake's error.
func dialResumable(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return err
	}
	_, err = tc.Read(make([]byte, 1))
	return err
}

// TestConfigResumed: Config's check runs on a resumed handshake too, with
// the certificate of the session and the records of the Config that
// resumes it: a session made under records that matched fails under
// records that no longer do. (crypto/tls calls VerifyConnection on
// resumptions; a cache shared between Configs relies on it.)
func TestConfigResumed(t *testing.T) {
	leaf := makeLeaf(t, nil, time.Now().Add(-time.Hour), "unrelated.example")
	other := makeLeaf(t, nil, time.Now().Add(-time.Hour), "unrelated.example")
	mx := []string{"mx.example.test"}
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS 1.2", tls.VersionTLS12}, {"TLS 1.3", tls.VersionTLS13}} {
		t.Run(v.name, func(t *testing.T) {
			addr, resumed := serveResumable(t, v.version, leaf)
			cache := tls.NewLRUClientSessionCache(1)
			config := func(c *x509.Certificate) *tls.Config {
				cfg := dane.Config("mx.example.test", recs(dane.Record(3, 1, 1, c)), mx)
				cfg.ClientSessionCache = cache
				return cfg
			}
			for i, tc := range []struct {
				cert        *x509.Certificate // the record's
				wantResumed bool
				wantErr     error
			}{
				{leaf.cert, false, nil},
				{leaf.cert, true, nil},
				{other.cert, true, dane.ErrNoMatch},
			} {
				err := dialResumable(t, addr, config(tc.cert))
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("handshake %d: %v, want %v", i+1, err, tc.wantErr)
				}
				select {
				case got := <-resumed:
					if got != tc.wantResumed {
						t.Errorf("handshake %d resumed = %v, want %v", i+1, got, tc.wantResumed)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("handshake %d: the server's VerifyConnection did not run", i+1)
				}
			}
		})
	}
}
