package delivery_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/mtasts"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestMTASTSTestingResumptionVerifiedRoute (review10b): the rule "no
// session is resumed under an MTA-STS policy in testing mode" holds only
// for routes whose own level does not verify. Under a route of tls =
// "verify" or "require" (plan.level stays the route's, so tlsConfig gives
// the level's cache), a testing-mode domain's sessions are resumed, and
// TLS-RPT goes on reporting the certificate of the first handshake as a
// success after the exchanger has started showing one for the wrong name
// (which a full handshake fails and reports as certificate-host-mismatch).
func TestMTASTSTestingResumptionVerifiedRoute(t *testing.T) {
	testingPolicy := strings.ReplaceAll(enforcePolicy, "enforce", "testing")
	for _, v := range resumeVersions {
		for _, level := range []string{delivery.TLSVerify, delivery.TLSRequire} {
			t.Run(v.name+"/"+level, func(t *testing.T) {
				ca := smtptest.NewCA(t)
				good, wrong := ca.Issue(t, "mx1.pol.test"), ca.Issue(t, "wrong.pol.test")
				var shown atomic.Pointer[tls.Certificate]
				shown.Store(&good)
				h := &handshakes{}
				m := startTestMTA(t, testMTAConfig{listen: "127.0.0.21:0", mod: func(o *smtp.Options) {
					o.TLS = &tls.Config{MinVersion: v.version, MaxVersion: v.version,
						GetCertificate:     func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return shown.Load(), nil },
						GetConfigForClient: h.hello, VerifyConnection: h.verify}
				}})
				r, _ := resumeResolver(t, stsZone)
				sts := mtasts.New(mtasts.Options{Resolver: r, RootCAs: ca.Pool,
					Port: policyServer(t, ca, map[string]string{"pol.test": testingPolicy})})
				rep := &reports{}
				tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: m.port, MTASTS: sts, RootCAs: ca.Pool,
					Reports: rep, MaxIdle: -1})
				for i := range 3 {
					if i == 1 {
						shown.Store(&wrong) // the exchanger's certificate goes wrong
					}
					job, _ := newTestJob(delivery.Route{TLS: level}, smtpTestBody, "bob@pol.test")
					tr.Deliver(context.Background(), job)
				}
				if got := h.list(); len(got) > 1 && got[1] {
					t.Errorf("handshakes resumed = %v: a session was resumed under a testing-mode policy", got)
				}
				got := rep.list()
				if len(got) < 2 || !strings.HasPrefix(got[1], "failure ") {
					t.Errorf("reports = %q, want the second (wrong certificate shown) a failure", got)
				}
			})
		}
	}
}
