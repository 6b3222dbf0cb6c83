package delivery_test

import (
	"testing"

	"github.com/mailgate/gateway/core/delivery"
)

// TestRequireTLSDANEHostListedByMTASTS: RFC 8689 §4.2.1 asks two things
// of the next hop of a REQUIRETLS message: that its name be vouched for
// (a DNSSEC-validated MX answer, or an MTA-STS policy listing it), and
// that its certificate be verified (PKIX or DANE). Here pol.test's zone
// is not signed, but its MTA-STS policy in enforce mode lists
// mx1.pol.test, whose own zone is signed and publishes a matching DANE-EE
// record: both demands are met. On main DANE wins the plan (level
// "dane"), and requireTLSFailure then asks for a validated MX answer
// unless the level is "mta-sts", so the message bounces 5.7.30, a
// permanent failure for a hop that is as safe as REQUIRETLS asks (a
// domain hosted at a provider that signs its MX zone and publishes DANE,
// the domain itself unsigned but publishing MTA-STS, is common).
func TestRequireTLSDANEHostListedByMTASTS(t *testing.T) {
	zone := stsZone + `
_25._tcp.mx1.pol.test.  IN TLSA 3 1 1 SPKI(127.0.0.21)
`
	sinks := []sinkSpec{{ip: "127.0.0.21", tls: true, names: []string{"mx1.pol.test"}, requireTLS: true}}
	// The MX host and its TLSA records are signed; pol.test's MX answer is not.
	w := newPolicyWorld(t, zone, sinks, map[string]string{"pol.test": enforcePolicy}, []string{"mx1.pol.test", "_25._tcp.mx1.pol.test"})
	got := w.deliver(t, "bob@pol.test", func(j *delivery.Job) { j.Envelope.RequireTLS = true })
	if got.Class != delivery.Delivered || w.spooled("127.0.0.21") != 1 {
		t.Errorf("Deliver = %+v; want delivered: the MTA-STS policy lists the MX and DANE verifies its certificate", got)
	}
}
