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
	testingPolicy := strings.ReplaceAll(enforcePolicy, "enforce", "testing")
	for _, v := range resumeVersions {
		t.Run(v.name, func(t *testing.T) {
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
				job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@pol.test")
				if got := tr.Deliver(context.Background(), job)[0]; got.Class != delivery.Delivered {
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
