package delivery_test

import (
	"fmt"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestSMTPTLSSessionSizeBounded: what a kept TLS session costs is not up
// to the next hop. DefaultTLSSessions's doc says a session costs about 3
// KB, and the bound is a count (1,000 a level, six levels); but a session
// holds every certificate the next hop sent, and crypto/tls takes a
// Certificate message of up to 256 KiB, unverified under opportunistic
// and encrypt. A next hop with a large chain (here one certificate with
// 2,500 names, about 60 KB) is kept whole, so a sender's MX hosts (or
// one domain's many MX names on one address) can make the transport
// hold hundreds of megabytes that its bound was meant to keep to a few.
func TestSMTPTLSSessionSizeBounded(t *testing.T) {
	const maxSession = 16 << 10 // generous next to "about 3 KB"
	names := []string{"mx.test"}
	for i := range 2500 {
		names = append(names, fmt.Sprintf("pad%04d.mx.test", i))
	}
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			ca := smtptest.NewCA(t)
			m, _ := resumeSink(t, "", v.version, ca.Issue(t, names...))
			r, _ := resumeResolver(t, routeZone)
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, MaxIdle: -1})
			deliverVia(t, tr, "mx.test", m.port, delivery.TLSOpportunistic)
			n := delivery.TLSSessionBytes(tr, delivery.TLSOpportunistic, "mx.test")
			if n == 0 {
				t.Fatal("no session kept for mx.test")
			}
			if n > maxSession {
				t.Errorf("the session kept for mx.test takes %d bytes (encoded), want at most %d: at %d sessions a level that is %d MB a level",
					n, maxSession, delivery.DefaultTLSSessions, n*delivery.DefaultTLSSessions>>20)
			}
		})
	}
}
