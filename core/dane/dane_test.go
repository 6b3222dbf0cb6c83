package dane_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/dane"
	"github.com/mailgate/gateway/core/resolver"
)

// ident is a certificate and its key.
type ident struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// issue makes a certificate from tmpl for a fresh key, signed by parent
// (nil: self-signed).
func issue(t testing.TB, tmpl *x509.Certificate, parent *ident) *ident {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber, err = rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	signer, parentCert := crypto.Signer(key), tmpl
	if parent != nil {
		signer, parentCert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ident{cert: cert, key: key}
}

func makeCA(t testing.TB, name string, parent *ident) *ident {
	return issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, parent)
}

// makeLeaf makes a server certificate for names, valid from notBefore for
// a day, signed by parent (nil: self-signed).
func makeLeaf(t testing.TB, parent *ident, notBefore time.Time, names ...string) *ident {
	return issue(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    names,
		NotBefore:   notBefore,
		NotAfter:    notBefore.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, parent)
}

// serveTLS runs a TLS server on 127.0.0.1:0 presenting chain (leaf first,
// its key) until the test ends; each connection ends when the client
// closes it or after 5s. sni receives the server name of each handshake.
func serveTLS(t testing.TB, key crypto.Signer, chain ...*x509.Certificate) (addr string, sni <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	names := make(chan string, 16)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			select {
			case names <- hello.ServerName:
			default:
			}
			return nil, nil
		},
	}
	return acceptTLS(t, l, cfg), names
}

// acceptTLS serves l with cfg until the test ends and returns its
// address: after each handshake it writes one byte (so that a TLS 1.3
// client that reads it has its session ticket) and reads until the
// client closes, or 5s.
func acceptTLS(t testing.TB, l net.Listener, cfg *tls.Config) string {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(c, cfg)
				if tc.Handshake() == nil {
					_, _ = tc.Write([]byte{1})
					_, _ = io.Copy(io.Discard, tc)
				}
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// handshake connects to addr with cfg and returns the handshake's error.
func handshake(t testing.TB, addr string, cfg *tls.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return tls.Client(c, cfg).HandshakeContext(ctx)
}

func recs(rs ...resolver.TLSA) []resolver.TLSA { return rs }

func TestHandshake(t *testing.T) {
	now := time.Now()
	root := makeCA(t, "Root", nil)
	inter := makeCA(t, "Intermediate", root)
	other := makeCA(t, "Other", nil)
	leaf := makeLeaf(t, inter, now.Add(-time.Hour), "mx.example.test")
	wild := makeLeaf(t, root, now.Add(-time.Hour), "*.example.test")
	expired := makeLeaf(t, root, now.Add(-48*time.Hour), "mx.example.test")
	self := makeLeaf(t, nil, now.Add(-48*time.Hour), "elsewhere.test") // expired, another name
	stranger := makeLeaf(t, other, now.Add(-time.Hour), "mx.example.test")
	mx := []string{"mx.example.test"}

	tests := []struct {
		name     string
		server   *ident
		chain    []*x509.Certificate // after the leaf
		recs     []resolver.TLSA
		names    []string
		wantErr  error
		wantType string
	}{
		{"EE SPKI SHA2-256, no name or date checks", self, nil, recs(dane.Record(3, 1, 1, self.cert)), mx, nil, ""},
		{"EE certificate SHA2-512", self, nil, recs(dane.Record(3, 0, 2, self.cert)), mx, nil, ""},
		{"EE certificate exact", self, nil, recs(dane.Record(3, 0, 0, self.cert)), mx, nil, ""},
		{"EE SPKI exact", self, nil, recs(dane.Record(3, 1, 0, self.cert)), mx, nil, ""},
		{"EE on an expired leaf under a CA", expired, []*x509.Certificate{root.cert}, recs(dane.Record(3, 1, 1, expired.cert)), mx, nil, ""},
		{"EE mismatch", self, nil, recs(dane.Record(3, 1, 1, leaf.cert)), mx, dane.ErrNoMatch, "tlsa-invalid"},
		{"EE mismatch, second record matches", self, nil, recs(dane.Record(3, 1, 1, leaf.cert), dane.Record(3, 0, 1, self.cert)), mx, nil, ""},
		{"TA root through an intermediate", leaf, []*x509.Certificate{inter.cert, root.cert}, recs(dane.Record(2, 0, 1, root.cert)), mx, nil, ""},
		{"TA intermediate SPKI", leaf, []*x509.Certificate{inter.cert}, recs(dane.Record(2, 1, 1, inter.cert)), mx, nil, ""},
		{"TA bare key not in the chain (2 1 0)", leaf, []*x509.Certificate{inter.cert}, recs(dane.Record(2, 1, 0, root.cert)), mx, nil, ""},
		{"TA digest of a key not in the chain", leaf, []*x509.Certificate{inter.cert}, recs(dane.Record(2, 1, 1, root.cert)), mx, dane.ErrNoMatch, "tlsa-invalid"},
		{"TA bare key that signed nothing", leaf, []*x509.Certificate{inter.cert}, recs(dane.Record(2, 1, 0, other.cert)), mx, dane.ErrNoMatch, "tlsa-invalid"},
		{"TA wrong name", leaf, []*x509.Certificate{inter.cert, root.cert}, recs(dane.Record(2, 0, 1, root.cert)), []string{"other.example.test"}, dane.ErrHostMismatch, "certificate-host-mismatch"},
		{"TA no names", leaf, []*x509.Certificate{inter.cert, root.cert}, recs(dane.Record(2, 0, 1, root.cert)), nil, dane.ErrHostMismatch, "certificate-host-mismatch"},
		{"TA second reference identifier", leaf, []*x509.Certificate{inter.cert}, recs(dane.Record(2, 0, 2, inter.cert)), []string{"example.test", "mx.example.test"}, nil, ""},
		{"TA wildcard", wild, []*x509.Certificate{root.cert}, recs(dane.Record(2, 1, 1, root.cert)), mx, nil, ""},
		{"TA wildcard is one label", wild, []*x509.Certificate{root.cert}, recs(dane.Record(2, 1, 1, root.cert)), []string{"a.mx.example.test"}, dane.ErrHostMismatch, "certificate-host-mismatch"},
		{"TA expired leaf", expired, []*x509.Certificate{root.cert}, recs(dane.Record(2, 0, 1, root.cert)), mx, dane.ErrExpired, "certificate-expired"},
		{"TA in the chain but not the issuer", stranger, []*x509.Certificate{other.cert, root.cert}, recs(dane.Record(2, 0, 1, root.cert)), mx, dane.ErrNotTrusted, "certificate-not-trusted"},
		{"only PKIX usages", leaf, []*x509.Certificate{inter.cert, root.cert}, recs(dane.Record(0, 0, 1, root.cert), dane.Record(1, 1, 1, leaf.cert)), mx, dane.ErrNoUsable, "tlsa-invalid"},
		{"no records", self, nil, nil, mx, dane.ErrNoUsable, "tlsa-invalid"},
		{"SHA2-512 published: a SHA2-256 match does not count", self, nil, recs(dane.Record(3, 1, 1, self.cert), dane.Record(3, 1, 2, leaf.cert)), mx, dane.ErrNoMatch, "tlsa-invalid"},
		{"SHA2-512 published and matching", self, nil, recs(dane.Record(3, 1, 1, leaf.cert), dane.Record(3, 1, 2, self.cert)), mx, nil, ""},
		{"SHA2-512 of another selector leaves SHA2-256 in force", self, nil, recs(dane.Record(3, 1, 1, self.cert), dane.Record(3, 0, 2, leaf.cert)), mx, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, sni := serveTLS(t, tt.server.key, append([]*x509.Certificate{tt.server.cert}, tt.chain...)...)
			err := handshake(t, addr, dane.Config("mx.example.test", tt.recs, tt.names))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("handshake: %v, want success", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("handshake: %v, want %v", err, tt.wantErr)
			}
			if got := dane.FailureType(err); got != tt.wantType {
				t.Errorf("FailureType(%v) = %q, want %q", err, got, tt.wantType)
			}
			select {
			case got := <-sni:
				if got != "mx.example.test" {
					t.Errorf("SNI = %q, want mx.example.test", got)
				}
			case <-time.After(5 * time.Second):
				t.Errorf("the server saw no ClientHello")
			}
		})
	}
}

func TestVerifyNoCertificate(t *testing.T) {
	self := makeLeaf(t, nil, time.Now(), "mx.example.test")
	for _, chain := range [][]*x509.Certificate{nil, {nil}} {
		err := dane.Verify(chain, recs(dane.Record(3, 1, 1, self.cert)), nil, time.Now())
		if !errors.Is(err, dane.ErrNoCertificate) || dane.FailureType(err) != "validation-failure" {
			t.Errorf("Verify(%v) = %v (%s), want ErrNoCertificate (validation-failure)", chain, err, dane.FailureType(err))
		}
	}
}

// Verify takes its time from the caller: a chain valid now is expired later.
func TestVerifyAtTime(t *testing.T) {
	now := time.Now()
	root := makeCA(t, "Root", nil)
	leaf := makeLeaf(t, root, now.Add(-time.Hour), "mx.example.test")
	chain := []*x509.Certificate{leaf.cert, root.cert}
	rs := recs(dane.Record(2, 1, 1, root.cert))
	if err := dane.Verify(chain, rs, []string{"mx.example.test"}, now); err != nil {
		t.Errorf("now: %v", err)
	}
	if err := dane.Verify(chain, rs, []string{"mx.example.test"}, now.Add(48*time.Hour)); !errors.Is(err, dane.ErrExpired) {
		t.Errorf("in two days: %v, want ErrExpired", err)
	}
}

func TestUsable(t *testing.T) {
	d32, d64 := make([]byte, 32), make([]byte, 64)
	in := []resolver.TLSA{
		{Usage: 3, Selector: 1, MatchingType: 1, Data: d32}, // 0 kept
		{Usage: 2, Selector: 0, MatchingType: 2, Data: d64}, // 1 kept
		{Usage: 3, Selector: 0, MatchingType: 0, Data: []byte{0x30}},
		{Usage: 2, Selector: 1, MatchingType: 0, Data: []byte{0x30}},
		{Usage: 0, Selector: 0, MatchingType: 1, Data: d32}, // PKIX-TA
		{Usage: 1, Selector: 1, MatchingType: 1, Data: d32}, // PKIX-EE
		{Usage: 4, Selector: 1, MatchingType: 1, Data: d32},
		{Usage: 3, Selector: 2, MatchingType: 1, Data: d32},
		{Usage: 3, Selector: 1, MatchingType: 3, Data: d32},
		{Usage: 3, Selector: 1, MatchingType: 1, Data: d64}, // wrong length
		{Usage: 3, Selector: 1, MatchingType: 2, Data: d32}, // wrong length
		{Usage: 3, Selector: 1, MatchingType: 0, Data: nil}, // empty
	}
	got := dane.Usable(in)
	want := []string{in[0].String(), in[1].String(), in[2].String(), in[3].String()}
	if len(got) != len(want) {
		t.Fatalf("Usable kept %d records %v, want %v", len(got), got, want)
	}
	for i := range got {
		if got[i].String() != want[i] {
			t.Errorf("Usable[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if got := dane.Usable(in[4:]); len(got) != 0 {
		t.Errorf("Usable of unusable records = %v, want none", got)
	}
}

func TestRecord(t *testing.T) {
	self := makeLeaf(t, nil, time.Now(), "mx.example.test")
	tests := []struct {
		usage, selector, mt uint8
		wantLen             int
	}{
		{3, 0, 0, len(self.cert.Raw)},
		{3, 1, 0, len(self.cert.RawSubjectPublicKeyInfo)},
		{3, 1, 1, 32},
		{2, 0, 2, 64},
	}
	for _, tt := range tests {
		r := dane.Record(tt.usage, tt.selector, tt.mt, self.cert)
		if r.Usage != tt.usage || r.Selector != tt.selector || r.MatchingType != tt.mt || len(r.Data) != tt.wantLen {
			t.Errorf("Record(%d %d %d) = %s, want %d bytes of data", tt.usage, tt.selector, tt.mt, r, tt.wantLen)
		}
	}
	r := dane.Record(3, 0, 0, self.cert)
	r.Data[0] ^= 0xff
	if self.cert.Raw[0] == r.Data[0] {
		t.Errorf("Record's exact data shares the certificate's memory")
	}
}

func TestFailureType(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{dane.ErrRequired, "dane-required"},
		{dane.ErrNoUsable, "tlsa-invalid"},
		{dane.ErrNoMatch, "tlsa-invalid"},
		{dane.ErrHostMismatch, "certificate-host-mismatch"},
		{dane.ErrExpired, "certificate-expired"},
		{dane.ErrNotTrusted, "certificate-not-trusted"},
		{dane.ErrNoCertificate, "validation-failure"},
		{errors.New("tls: handshake failure"), "validation-failure"},
		{&resolver.Error{Name: "_25._tcp.mx.test", Type: "TLSA", Err: resolver.ErrTemporary}, "dnssec-invalid"},
		{&resolver.Error{Name: "_25._tcp.mx.test", Type: "TLSA", Err: resolver.ErrInvalidName}, "validation-failure"},
	}
	for _, tt := range tests {
		if got := dane.FailureType(tt.err); got != tt.want {
			t.Errorf("FailureType(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
