package delivery_test

import (
	"fmt"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestSMTPTLSResumptionPerPort: two next hops that share a host name but
// not a port (a route to relay.test:587 and another to relay.test:25;
// two servers, each with its own ticket keys) each resume their own
// sessions. The sessions are keyed by the ServerName alone, so each new
// connection offers the other port's session, the server cannot use it
// and a full handshake follows, whose session then pushes the other
// port's out: with the two used in turn, neither ever resumes. Postfix,
// which the cache follows, keys its sessions by address and port as well
// (smtp_tls_session_cache_database's serverid).
func TestSMTPTLSResumptionPerPort(t *testing.T) {
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			ca := smtptest.NewCA(t)
			cert := ca.Issue(t, "mx.test")
			m1, hs1 := resumeSink(t, "", v.version, cert)
			m2, hs2 := resumeSink(t, "", v.version, cert)
			r, _ := resumeResolver(t, routeZone)
			tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, RootCAs: ca.Pool, MaxIdle: -1})
			for range 2 {
				deliverVia(t, tr, "mx.test", m1.port, delivery.TLSVerify)
				deliverVia(t, tr, "mx.test", m2.port, delivery.TLSVerify)
			}
			for i, hs := range []*handshakes{hs1, hs2} {
				if got, want := fmt.Sprint(hs.list()), "[false true]"; got != want {
					t.Errorf("port %d: handshakes resumed = %s, want %s", i+1, got, want)
				}
			}
		})
	}
}
