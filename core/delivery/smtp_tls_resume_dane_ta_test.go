package delivery_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/smtp"
)

// TestDANEResumptionReissuedAnchor: a DANE-TA record of a key (2 1 1,
// RFC 7671 §5.2's advice, so that re-issuing the CA certificate for the
// same key leaves the records as they are) keeps working when the next
// hop's CA certificate is re-issued. The records do not change, so the
// session made under the old CA certificate stays in the DANE cache under
// the same key. Once that old certificate has expired (the new one is
// what the next hop sends now), the next attempt resumes the session,
// crypto/tls runs the DANE check on the session's old chain (it only
// evicts a session beforehand for its leaf's expiry), the check fails
// with certificate-expired, and the message is deferred (4.7.5) and
// TLS-RPT told of a failure that a full handshake with the next hop's
// current chain would not have had. crypto/tls then drops the session
// (RFC 5077 §3.2), so the attempt after that is a full handshake and
// passes: one message deferred and one false failure report per next
// hop and re-issue. (The same holds for the rollover of
// c88df9f's message: without the records in the key, the old session
// would fail once, not "on every attempt until its ticket expires".)
func TestDANEResumptionReissuedAnchor(t *testing.T) {
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel() // each waits for its CA certificate to expire
			ta := newReissuedAnchor(t, 2*time.Second)
			h := &handshakes{}
			m := startTestMTA(t, testMTAConfig{listen: "127.0.0.31:0", mod: func(o *smtp.Options) {
				o.TLS = &tls.Config{MinVersion: v.version, MaxVersion: v.version,
					GetCertificate:     func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ta.chain.Load(), nil },
					GetConfigForClient: h.hello, VerifyConnection: h.verify}
			}})
			zone := resumeDANEZone + "_25._tcp.mx1.dane.test. IN TLSA 2 1 1 " + ta.spki + "\n"
			r, dnsSrv := resumeResolver(t, zone)
			for _, name := range []string{"mx1.dane.test", "_25._tcp.mx1.dane.test"} {
				dnsSrv.SetAD(name, true)
			}
			rep := &reports{}
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: m.port, DANE: true, MaxIdle: -1, Reports: rep})
			deliver := func(step string) {
				t.Helper()
				job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@dane.test")
				if got := tr.Deliver(context.Background(), job)[0]; got.Class != delivery.Delivered || got.TLSPolicy != delivery.TLSDANE {
					t.Errorf("%s: Deliver = %+v, want delivered under dane", step, got)
				}
			}
			deliver("before the CA certificate expires")
			time.Sleep(time.Until(ta.oldNotAfter) + 1500*time.Millisecond)
			ta.reissue() // the next hop now sends its re-issued CA certificate
			deliver("after the CA certificate was re-issued")
			deliver("again")
			t.Logf("handshakes resumed: %v", h.list())
			want := "[success tlsa dane.test  success tlsa dane.test  success tlsa dane.test ]"
			if got := fmt.Sprint(rep.list()); got != want {
				t.Errorf("TLS-RPT = %s, want %s", got, want)
			}
		})
	}
}

// reissuedAnchor is a next hop's chain under a CA whose certificate
// expires soon and is then re-issued for the same key.
type reissuedAnchor struct {
	chain       atomic.Pointer[tls.Certificate] // what the next hop sends
	spki        string                          // the CA key's SHA-256, for a 2 1 1 record
	oldNotAfter time.Time
	reissue     func()
}

// newReissuedAnchor makes a CA certificate valid for life, a leaf for
// mx1.dane.test valid for a day under it, and the chain of the two.
func newReissuedAnchor(t *testing.T, life time.Duration) *reissuedAnchor {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	selfSign := func(serial int64, notAfter time.Time) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "dane.test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	oldCA := selfSign(1, time.Now().Add(life))
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "mx1.dane.test"},
		DNSNames: []string{"mx1.dane.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, oldCA, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(oldCA.RawSubjectPublicKeyInfo)
	ta := &reissuedAnchor{spki: hex.EncodeToString(sum[:]), oldNotAfter: oldCA.NotAfter}
	ta.chain.Store(&tls.Certificate{Certificate: [][]byte{leafDER, oldCA.Raw}, PrivateKey: leafKey})
	ta.reissue = func() {
		newCA := selfSign(2, time.Now().Add(24*time.Hour)) // the same key: 2 1 1 still matches
		ta.chain.Store(&tls.Certificate{Certificate: [][]byte{leafDER, newCA.Raw}, PrivateKey: leafKey})
	}
	return ta
}
