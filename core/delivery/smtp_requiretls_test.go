package delivery_test

import (
	"context"
	"crypto/tls"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/mailgate/gateway/core/delivery"
)

// pkixZone is stsZone with DNSSEC-validated TLSA records for the MX that
// are all unusable for SMTP (PKIX-EE, usage 1: RFC 7672 §3.1.3).
const pkixZone = stsZone + `
_25._tcp.mx1.pol.test.  IN TLSA 1 1 1 SPKI(127.0.0.21)
`

// TestUnusableTLSADowngradesMTASTS: DANE records that are all
// unusable authenticate nothing; they must not replace the domain's
// MTA-STS enforce policy (chain and MX name verified) with "encrypt" (any
// certificate). On main the MX with a certificate for another name gets
// the mail under "encrypt", which MTA-STS enforce forbids, and a
// REQUIRETLS message that MTA-STS would carry over verified TLS bounces.
func TestUnusableTLSADowngradesMTASTS(t *testing.T) {
	secure := []string{"mx1.pol.test", "_25._tcp.mx1.pol.test"}
	t.Run("wrong certificate", func(t *testing.T) {
		sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"attacker.example"}}}
		w := newPolicyWorld(t, pkixZone, sinks, map[string]string{"pol.test": enforcePolicy}, secure)
		got := w.deliver(t, "bob@pol.test", nil)
		if got.Class == delivery.Delivered || w.spooled("127.0.0.21") != 0 {
			t.Errorf("Deliver = %+v (tls_policy %q): delivered to a certificate for another name despite MTA-STS enforce", got, got.TLSPolicy)
		}
	})
	t.Run("REQUIRETLS", func(t *testing.T) {
		sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}}}
		w := newPolicyWorld(t, pkixZone, sinks, map[string]string{"pol.test": enforcePolicy}, secure)
		got := w.deliver(t, "bob@pol.test", func(j *delivery.Job) { j.Envelope.RequireTLS = true })
		if got.Class != delivery.Delivered {
			t.Errorf("Deliver = %+v, want delivered over TLS verified by MTA-STS", got)
		}
	})
}

// TestTLSRPTCountsSessions: TLS-RPT counts sessions (RFC 8460
// §4.4: total-successful/failure-session-count). One delivery over one
// session must count once; an exchanger that is never contacted is no
// session at all.
func TestTLSRPTCountsSessions(t *testing.T) {
	t.Run("testing policy, MX not listed", func(t *testing.T) {
		zone := strings.Replace(stsZone, "pol.test.            IN MX 10 mx1.pol.test.", "pol.test.            IN MX 10 rogue.pol.test.", 1) + `
rogue.pol.test.      IN A 127.0.0.22
`
		sinks := []sinkSpec{{ip: "127.0.0.22", tls: true, names: []string{"rogue.pol.test"}}}
		testing := strings.ReplaceAll(enforcePolicy, "enforce", "testing")
		w := newPolicyWorld(t, zone, sinks, map[string]string{"pol.test": testing}, nil)
		if got := w.deliver(t, "bob@pol.test", nil); got.Class != delivery.Delivered {
			t.Fatalf("Deliver = %+v, want delivered (testing)", got)
		}
		if r := w.reports.list(); len(r) != 1 {
			t.Errorf("one session, reports = %q; want it counted once (as a failure)", r)
		}
	})
	t.Run("enforce, backup MX not listed and not tried", func(t *testing.T) {
		zone := stsZone + `
pol.test.            IN MX 20 backup.pol.test.
backup.pol.test.     IN A 127.0.0.22
`
		sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}}}
		w := newPolicyWorld(t, zone, sinks, map[string]string{"pol.test": enforcePolicy}, nil)
		for i := 0; i < 3; i++ {
			if got := w.deliver(t, "bob@pol.test", nil); got.Class != delivery.Delivered {
				t.Fatalf("Deliver = %+v, want delivered", got)
			}
		}
		for _, r := range w.reports.list() {
			if strings.HasPrefix(r, "failure") {
				t.Errorf("reports = %q: failures counted for an exchanger no session went to", w.reports.list())
				break
			}
		}
	})
}

// TestRequireTLSUnauthenticatedMX: RFC 8689 §4.2.1: when the MX
// look-up is not DNSSEC-validated, a REQUIRETLS message may go to an MX
// only if MTA-STS validates that MX name; the certificate (DANE or
// PKIX) only proves the server is the host the MX answer named, which an
// attacker on the DNS path chose. Here dane.test's MX answer has no AD
// bit and dane.test publishes no MTA-STS policy; main delivers anyway,
// under DANE (the attacker's own signed zone would do) and under a
// "verify" route (any host with a Web PKI certificate would do).
func TestRequireTLSUnauthenticatedMX(t *testing.T) {
	requireTLS := func(j *delivery.Job) { j.Envelope.RequireTLS = true }
	sinks := []sinkSpec{{ip: "127.0.0.31", tls: true, names: []string{"mx1.dane.test"}}}
	t.Run("DANE", func(t *testing.T) {
		// mx1.dane.test's addresses and TLSA records are signed; the MX
		// record of dane.test is not.
		w := newPolicyWorld(t, daneZone, sinks, nil, []string{"mx1.dane.test", "_25._tcp.mx1.dane.test"})
		got := w.deliver(t, "bob@dane.test", requireTLS)
		if got.Class == delivery.Delivered || w.spooled("127.0.0.31") != 0 {
			t.Errorf("Deliver = %+v: REQUIRETLS message delivered to an MX taken from an unvalidated MX answer, with no MTA-STS", got)
		}
	})
	t.Run("verify route", func(t *testing.T) {
		w := newPolicyWorld(t, daneZone, sinks, nil, nil)
		job, _ := newTestJob(delivery.Route{TLS: delivery.TLSVerify}, smtpTestBody, "bob@dane.test")
		requireTLS(job)
		got := w.tr.Deliver(context.Background(), job)
		if got[0].Class == delivery.Delivered || w.spooled("127.0.0.31") != 0 {
			t.Errorf("Deliver = %+v: REQUIRETLS message delivered to an MX taken from an unvalidated MX answer, with no MTA-STS", got[0])
		}
	})
}

// TestRequireTLSBackupMXBouncesForGood: a REQUIRETLS message whose
// best MX (DANE) is down for the moment and whose backup MX has no DANE
// nor MTA-STS. The backup's 5.7.30 is about that host, not the message;
// it must not turn the primary's temporary failure into a bounce (the
// STYLE lesson of a temporary failure made permanent). On main the last
// host's failure wins: 550 5.7.30, and the message is returned for good.
func TestRequireTLSBackupMXBouncesForGood(t *testing.T) {
	zone := `
test.                        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
dane.test.                   IN MX 10 mx1.dane.test.
dane.test.                   IN MX 20 mx2.dane.test.
mx1.dane.test.               IN A 127.0.0.33
_25._tcp.mx1.dane.test.      IN TLSA 3 1 1 0000000000000000000000000000000000000000000000000000000000000000
mx2.dane.test.               IN A 127.0.0.32
`
	// Only the backup listens: the primary refuses connections for now.
	sinks := []sinkSpec{{ip: "127.0.0.32", tls: true, names: []string{"mx2.dane.test"}}}
	w := newPolicyWorld(t, zone, sinks, nil, []string{"dane.test", "mx1.dane.test", "_25._tcp.mx1.dane.test"})
	got := w.deliver(t, "bob@dane.test", func(j *delivery.Job) { j.Envelope.RequireTLS = true })
	if got.Class != delivery.Temporary {
		t.Errorf("Deliver = %+v; want Temporary: the DANE MX is only down for now", got)
	}
}

// TestRequireTLSNextMXNotTried: the best MX lacks REQUIRETLS; the
// next one (same DANE protection) offers it. RFC 8689 §4.2.1 lets the
// client try another MX; the 5.7.30 is about one server, not the
// message. On main the first server's refusal is every recipient's
// final result and MX 20 is never tried.
func TestRequireTLSNextMXNotTried(t *testing.T) {
	ca := smtptest.NewCA(t)
	old := ca.Issue(t, "mx1.dane.test")
	ln, err := net.Listen("tcp", "127.0.0.34:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	good := ca.Issue(t, "mx2.dane.test")
	sink := startTestMTA(t, testMTAConfig{listen: "127.0.0.35:" + strconv.Itoa(port), mod: func(o *smtp.Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{good}}
	}})
	zone := `
test.                        IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300
dane.test.                   IN MX 10 mx1.dane.test.
dane.test.                   IN MX 20 mx2.dane.test.
mx1.dane.test.               IN A 127.0.0.34
_25._tcp.mx1.dane.test.      IN TLSA 3 1 1 ` + spkiSHA256(old) + `
mx2.dane.test.               IN A 127.0.0.35
_25._tcp.mx2.dane.test.      IN TLSA 3 1 1 ` + spkiSHA256(good) + `
`
	r, dnsSrv := newTestResolver(t, zone)
	for _, n := range []string{"dane.test", "mx1.dane.test", "_25._tcp.mx1.dane.test", "mx2.dane.test", "_25._tcp.mx2.dane.test"} {
		dnsSrv.SetAD(n, true)
	}
	done := scriptedTLSServer(t, ln, &tls.Config{Certificates: []tls.Certificate{old}}, `
		S: 220 old.test ESMTP
		C: EHLO gw.test
		S: 250-old.test
		S: 250 STARTTLS
		C: STARTTLS
		S: 220 go ahead
		S: <tls>
		C: EHLO gw.test
		S: 250-old.test
		S: 250 8BITMIME
		C: QUIT
		S: 221 bye`)
	tr := newSMTPTransport(t, delivery.SMTPOptions{Resolver: r, Port: port, DANE: true, MaxIdle: -1})
	job, _ := newTestJob(delivery.Route{}, smtpTestBody, "bob@dane.test")
	job.Envelope.RequireTLS = true
	got := tr.Deliver(context.Background(), job)
	<-done
	if len(got) != 1 || got[0].Class != delivery.Delivered || len(sink.spool.Messages()) != 1 {
		t.Errorf("Deliver = %+v; want delivered by mx2.dane.test, which offers REQUIRETLS", got)
	}
}
