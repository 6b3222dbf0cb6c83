package delivery_test

import (
	"fmt"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestSMTPTLSSessionSizeBounded: what a kept TLS session costs is not up
// to the next hop. The bound is a count (1,000 a level), but a session
// holds every certificate the next hop sent, and crypto/tls takes a
// Certificate message of up to 256 KiB, unverified under opportunistic
// and encrypt. A next hop with a large chain (here one certificate with
// 2,500 names, about 60 KB) must not be kept whole (review10: it was, so
// a sender's MX hosts could make the transport hold hundreds of
// megabytes); an ordinary one is kept, and small.
func TestSMTPTLSSessionSizeBounded(t *testing.T) {
	const maxSession = 16 << 10 // generous next to "about 3 KB"
	names := []string{"mx.test"}
	for i := range 2500 {
		names = append(names, fmt.Sprintf("pad%04d.mx.test", i))
	}
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			ca := smtptest.NewCA(t)
			r, _ := resumeResolver(t, routeZone)
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, MaxIdle: -1})

			small, _ := resumeSink(t, "", v.version, ca.Issue(t, "mx.test"))
			deliverVia(t, tr, "mx.test", small.port, delivery.TLSOpportunistic)
			n := delivery.TLSSessionBytes(tr, delivery.TLSOpportunistic, "mx.test", fmt.Sprintf("127.0.0.1:%d", small.port))
			if n == 0 || n > maxSession {
				t.Errorf("the session kept for an ordinary certificate takes %d bytes, want some and at most %d", n, maxSession)
			}

			large, _ := resumeSink(t, "", v.version, ca.Issue(t, names...))
			deliverVia(t, tr, "mx.test", large.port, delivery.TLSOpportunistic)
			if n := delivery.TLSSessionBytes(tr, delivery.TLSOpportunistic, "mx.test", fmt.Sprintf("127.0.0.1:%d", large.port)); n != 0 {
				t.Errorf("the session kept for mx.test takes %d bytes (encoded), want none kept over %d: at %d sessions a level that is %d MB a level",
					n, maxSession, delivery.DefaultTLSSessions, n*delivery.DefaultTLSSessions>>20)
			}
		})
	}
}
