package dane_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/dane"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// TestThroughResolver goes the way the SMTP transport does: TLSA from a DNS
// server on loopback, the AD bit deciding, Usable, then a handshake.
func TestThroughResolver(t *testing.T) {
	good := makeLeaf(t, nil, time.Now().Add(-time.Hour), "mx.example.test")
	bad := makeLeaf(t, nil, time.Now().Add(-time.Hour), "mx.example.test")
	zone := fmt.Sprintf(`
example.test.            3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
_25._tcp.mx.example.test.  60 IN TLSA %s
_25._tcp.pkix.example.test. 60 IN TLSA %s
mx.example.test.           60 IN A 127.0.0.1
`, dane.Record(3, 1, 1, good.cert), dane.Record(1, 1, 1, good.cert))

	tests := []struct {
		name       string
		qname      string
		secure     bool
		fault      resolvertest.Fault
		server     *ident
		wantSecure bool
		wantUsable int
		wantErr    bool   // the look-up
		wantTLS    error  // the handshake, when the answer is secure with usable records
		wantType   string // FailureType of the look-up's or the handshake's error
	}{
		{"secure, matching", "_25._tcp.mx.example.test", true, resolvertest.NoFault, good, true, 1, false, nil, ""},
		{"secure, not matching", "_25._tcp.mx.example.test", true, resolvertest.NoFault, bad, true, 1, false, dane.ErrNoMatch, "tlsa-invalid"},
		{"insecure: no DANE", "_25._tcp.mx.example.test", false, resolvertest.NoFault, bad, false, 1, false, nil, ""},
		{"secure NODATA", "_25._tcp.none.example.test", true, resolvertest.NoFault, bad, true, 0, false, nil, ""},
		{"insecure NODATA", "mx.example.test", false, resolvertest.NoFault, bad, false, 0, false, nil, ""},
		{"secure, PKIX only: none usable", "_25._tcp.pkix.example.test", true, resolvertest.NoFault, bad, true, 0, false, nil, ""},
		{"SERVFAIL (bogus) is temporary", "_25._tcp.mx.example.test", true, resolvertest.ServFail, good, false, 0, true, nil, "dnssec-invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := resolvertest.Start(t, zone)
			s.SetSecure(tt.secure)
			s.SetFault(tt.qname, dns.TypeTLSA, tt.fault)
			r, err := resolver.New(resolver.Options{Servers: []string{s.Addr()}, Attempts: 1, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			recs, secure, err := r.TLSA(t.Context(), tt.qname)
			if (err != nil) != tt.wantErr || (err != nil && !resolver.IsTemporary(err)) {
				t.Fatalf("TLSA: %v, want error %v (temporary)", err, tt.wantErr)
			}
			if err != nil {
				if got := dane.FailureType(err); got != tt.wantType {
					t.Errorf("FailureType(%v) = %q, want %q", err, got, tt.wantType)
				}
				return
			}
			usable := dane.Usable(recs)
			if secure != tt.wantSecure || len(usable) != tt.wantUsable {
				t.Fatalf("TLSA: secure %v with %d usable records, want %v with %d", secure, len(usable), tt.wantSecure, tt.wantUsable)
			}
			if !secure || len(usable) == 0 {
				return
			}
			addr, _ := serveTLS(t, tt.server.key, tt.server.cert)
			err = handshake(t, addr, dane.Config("mx.example.test", usable, []string{"mx.example.test"}))
			if (tt.wantTLS == nil) != (err == nil) || (tt.wantTLS != nil && !errors.Is(err, tt.wantTLS)) {
				t.Fatalf("handshake: %v, want %v", err, tt.wantTLS)
			}
			if got := dane.FailureType(err); got != tt.wantType {
				t.Errorf("FailureType(%v) = %q, want %q", err, got, tt.wantType)
			}
		})
	}
}
