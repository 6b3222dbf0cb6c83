package delivery_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/mtasts"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestMTASTSTestingResumptionStaleCertificate: under an MTA-STS policy in
// testing mode, whose point is to tell the domain (TLS-RPT) what would
// fail under enforce before it switches, an exchanger that starts
// showing a certificate for the wrong name is reported as a failure. A
// resumed session shows no certificate: the testing check runs on the
// session's, the good one of the first handshake, and reports success;
// each resumption brings a new ticket that carries that same certificate
// on, so every later session is reported a success too (Go's server
// accepts such a chain for 7 days from its first handshake), while every
// full handshake, and every delivery once the policy is in enforce mode
// (the mta-sts level has a cache of its own), fails on the name.
func TestMTASTSTestingResumptionStaleCertificate(t *testing.T) {
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
			h, rep, results := deliverWhileCertificateGoesWrong(t, v.version, "")
			for i, got := range results {
				if got.Class != delivery.Delivered {
					t.Fatalf("delivery %d = %+v, want delivered (testing mode)", i+1, got)
				}
			}
			want := []string{"success sts pol.test mx1.pol.test",
				"failure sts pol.test certificate-host-mismatch", "failure sts pol.test certificate-host-mismatch"}
			if got := rep.list(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("reports = %q, want %q (handshakes resumed: %v)", got, want, h.list())
			}
		})
	}
}

// TestMTASTSTestingResumptionVerifiedRoute (review10b): the rule "no
// session is resumed under an MTA-STS policy in testing mode" held only
// for routes whose own level does not verify. Under a route of tls =
// "verify" or "require" (plan.level stays the route's, so tlsConfig gave
// the level's cache), a testing-mode domain's sessions were resumed, and
// TLS-RPT went on reporting the certificate of the first handshake as a
// success after the exchanger had started showing one for the wrong name
// (which a full handshake fails and reports as certificate-host-mismatch).
func TestMTASTSTestingResumptionVerifiedRoute(t *testing.T) {
	for _, v := range resumeVersions {
		for _, level := range []string{delivery.TLSVerify, delivery.TLSRequire} {
			t.Run(v.name+"/"+level, func(t *testing.T) {
				h, rep, _ := deliverWhileCertificateGoesWrong(t, v.version, level)
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

// deliverWhileCertificateGoesWrong delivers three messages for pol.test,
// whose MTA-STS policy is in testing mode, over route level (at TLS
// version), through an exchanger that shows a certificate for its name
// to the first connection and one for the wrong name after it; it returns
// the exchanger's handshakes, the TLS-RPT reports and the results.
func deliverWhileCertificateGoesWrong(t *testing.T, version uint16, level string) (*handshakes, *reports, []delivery.Result) {
	t.Helper()
	testingPolicy := strings.ReplaceAll(enforcePolicy, "enforce", "testing")
	ca := smtptest.NewCA(t)
	good, wrong := ca.Issue(t, "mx1.pol.test"), ca.Issue(t, "wrong.pol.test")
	var shown atomic.Pointer[tls.Certificate]
	shown.Store(&good)
	h := &handshakes{}
	m := startTestMTA(t, testMTAConfig{listen: "127.0.0.21:0", mod: func(o *smtp.Options) {
		o.TLS = &tls.Config{MinVersion: version, MaxVersion: version,
			GetCertificate:     func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return shown.Load(), nil },
			GetConfigForClient: h.hello, VerifyConnection: h.verify}
	}})
	r, _ := resumeResolver(t, stsZone)
	sts := mtasts.New(mtasts.Options{Resolver: r, RootCAs: ca.Pool,
		Port: policyServer(t, ca, map[string]string{"pol.test": testingPolicy})})
	rep := &reports{}
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: m.port, MTASTS: sts, RootCAs: ca.Pool,
		Reports: rep, MaxIdle: -1})
	var results []delivery.Result
	for i := range 3 {
		if i == 1 {
			shown.Store(&wrong) // the exchanger's certificate goes wrong
		}
		job, _ := newTestJob(delivery.Route{TLS: level}, smtpTestBody, "bob@pol.test")
		results = append(results, tr.Deliver(context.Background(), job)[0])
	}
	return h, rep, results
}
