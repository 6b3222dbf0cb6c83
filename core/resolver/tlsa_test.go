package resolver_test

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

const tlsaZone = `
test.                   3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
_25._tcp.mx.test.            IN TLSA 3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
_25._tcp.mx.test.            IN TLSA 2 0 0 3082
_25._tcp.alias.test.         IN CNAME _25._tcp.mx.test.
_25._tcp.dangling.test.      IN CNAME _25._tcp.gone.test.
mx.test.                     IN A 192.0.2.1
`

var (
	eeRec = resolver.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
		17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}}
	taRec = resolver.TLSA{Usage: 2, Selector: 0, MatchingType: 0, Data: []byte{0x30, 0x82}}
)

func TestTLSA(t *testing.T) {
	tests := []struct {
		name       string
		qname      string
		secure     bool            // the zone's AD bit
		ad         map[string]bool // per name
		fault      resolvertest.Fault
		noChase    bool
		want       []resolver.TLSA
		wantSecure bool
		wantErr    error
	}{
		{"secure records", "_25._tcp.mx.test", true, nil, resolvertest.NoFault, false, []resolver.TLSA{eeRec, taRec}, true, nil},
		{"insecure records", "_25._tcp.mx.test", false, nil, resolvertest.NoFault, false, []resolver.TLSA{eeRec, taRec}, false, nil},
		{"secure NODATA", "mx.test", true, nil, resolvertest.NoFault, false, nil, true, nil},
		{"insecure NODATA", "mx.test", false, nil, resolvertest.NoFault, false, nil, false, nil},
		{"secure NXDOMAIN", "_25._tcp.nope.test", true, nil, resolvertest.NoFault, false, nil, true, nil},
		{"insecure NXDOMAIN", "_25._tcp.nope.test", false, nil, resolvertest.NoFault, false, nil, false, nil},
		{"secure CNAME in one answer", "_25._tcp.alias.test", true, nil, resolvertest.NoFault, false, []resolver.TLSA{eeRec, taRec}, true, nil},
		{"secure CNAME over two queries", "_25._tcp.alias.test", true, nil, resolvertest.NoFault, true, []resolver.TLSA{eeRec, taRec}, true, nil},
		{"insecure alias, secure target", "_25._tcp.alias.test", true, map[string]bool{"_25._tcp.alias.test": false}, resolvertest.NoFault, true, []resolver.TLSA{eeRec, taRec}, false, nil},
		{"secure alias, insecure target", "_25._tcp.alias.test", true, map[string]bool{"_25._tcp.mx.test": false}, resolvertest.NoFault, true, []resolver.TLSA{eeRec, taRec}, false, nil},
		{"CNAME to NXDOMAIN", "_25._tcp.dangling.test", true, nil, resolvertest.NoFault, false, nil, true, nil},
		{"SERVFAIL is temporary", "_25._tcp.mx.test", true, nil, resolvertest.ServFail, false, nil, false, resolver.ErrTemporary},
		{"REFUSED is temporary", "_25._tcp.mx.test", true, nil, resolvertest.Refused, false, nil, false, resolver.ErrTemporary},
		{"invalid name", "_25._tcp..mx.test", true, nil, resolvertest.NoFault, false, nil, false, resolver.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := resolvertest.Start(t, tlsaZone)
			s.SetSecure(tt.secure)
			for n, on := range tt.ad {
				s.SetAD(n, on)
			}
			s.SetCNAMEChase(!tt.noChase)
			if tt.fault != resolvertest.NoFault {
				s.SetFault(tt.qname, dns.TypeTLSA, tt.fault)
			}
			r := newResolver(t, resolver.Options{Attempts: 1}, s)
			got, secure, err := r.TLSA(t.Context(), tt.qname)
			checkErr(t, err, tt.wantErr)
			if !equalTLSA(got, tt.want) || secure != tt.wantSecure {
				t.Errorf("TLSA(%s) = %v, secure %v; want %v, secure %v", tt.qname, got, secure, tt.want, tt.wantSecure)
			}
		})
	}
}

func equalTLSA(a, b []resolver.TLSA) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Usage != b[i].Usage || a[i].Selector != b[i].Selector ||
			a[i].MatchingType != b[i].MatchingType || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

// The AD bit is cached with the answer: a cached secure answer stays secure,
// a cached insecure one stays insecure, until it expires.
func TestTLSACacheKeepsADBit(t *testing.T) {
	for _, secure := range []bool{true, false} {
		s := resolvertest.Start(t, tlsaZone)
		s.SetSecure(secure)
		clk := newClock()
		r := newResolver(t, resolver.Options{Now: clk.Now}, s)
		for i := range 2 {
			_, got, err := r.TLSA(t.Context(), "_25._tcp.mx.test")
			if err != nil || got != secure {
				t.Fatalf("zone secure %v, look-up %d: secure %v, err %v", secure, i, got, err)
			}
			if i == 0 {
				s.SetSecure(!secure) // a cached answer does not see this
			}
		}
		if n := s.Queries("_25._tcp.mx.test", dns.TypeTLSA); n != 1 {
			t.Errorf("zone secure %v: server saw %d queries, want 1", secure, n)
		}
		clk.Advance(time.Hour) // the zone's TTL (3600, from the SOA line)
		if _, got, err := r.TLSA(t.Context(), "_25._tcp.mx.test"); err != nil || got == secure {
			t.Errorf("zone secure %v, after expiry: secure %v, err %v; want the server's new answer", secure, got, err)
		}
	}
}

// The AD bit of an MX or address answer does not leak into a TLSA answer
// of the same name, nor the other way: the cache keys by type.
func TestTLSASecureOnlyForItsType(t *testing.T) {
	s := resolvertest.Start(t, tlsaZone)
	s.SetSecure(false)
	r := newResolver(t, resolver.Options{}, s)
	if _, err := r.LookupIP(t.Context(), "mx.test"); err != nil {
		t.Fatalf("LookupIP: %v", err)
	}
	s.SetSecure(true)
	if _, secure, err := r.TLSA(t.Context(), "mx.test"); err != nil || !secure {
		t.Errorf("TLSA NODATA after an insecure A answer: secure %v, err %v; want secure", secure, err)
	}
}

func TestTLSAString(t *testing.T) {
	if got, want := eeRec.String(), "3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (resolver.TLSA{Usage: 2}).String(); got != "2 0 0 " {
		t.Errorf("String() of an empty record = %q", got)
	}
}

func TestTLSAErrorNamesType(t *testing.T) {
	s := resolvertest.Start(t, tlsaZone)
	s.SetFault("_25._tcp.mx.test", dns.TypeTLSA, resolvertest.ServFail)
	r := newResolver(t, resolver.Options{Attempts: 1}, s)
	_, _, err := r.TLSA(t.Context(), "_25._tcp.mx.test")
	var rerr *resolver.Error
	if !errors.As(err, &rerr) || rerr.Type != "TLSA" || !strings.Contains(err.Error(), "TLSA _25._tcp.mx.test") {
		t.Errorf("error = %v, want a *resolver.Error of type TLSA naming the name", err)
	}
}

func TestLookupIPSecure(t *testing.T) {
	const hostZone = `
test.              3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
dual.test.              IN A    192.0.2.1
dual.test.              IN AAAA 2001:db8::1
alias.test.             IN CNAME dual.test.
`
	tests := []struct {
		name       string
		host       string
		secure     bool
		ad         map[string]bool
		fault      uint16 // a type that SERVFAILs
		want       int    // addresses
		wantSecure bool
		wantErr    error
	}{
		{"secure", "dual.test", true, nil, 0, 2, true, nil},
		{"insecure", "dual.test", false, nil, 0, 2, false, nil},
		{"secure alias, insecure target", "alias.test", true, map[string]bool{"dual.test": false}, 0, 2, false, nil},
		{"insecure alias, secure target", "alias.test", false, map[string]bool{"dual.test": true}, 0, 2, false, nil},
		{"AAAA fails, A secure", "dual.test", true, nil, dns.TypeAAAA, 1, true, nil},
		{"A fails, AAAA secure", "dual.test", true, nil, dns.TypeA, 1, true, nil},
		{"A fails, AAAA insecure", "dual.test", false, nil, dns.TypeA, 1, false, nil},
		{"secure NXDOMAIN", "nope.test", true, nil, 0, 0, false, resolver.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := resolvertest.Start(t, hostZone)
			s.SetSecure(tt.secure)
			for n, on := range tt.ad {
				s.SetAD(n, on)
			}
			if tt.fault != 0 {
				s.SetFault(tt.host, tt.fault, resolvertest.ServFail)
			}
			r := newResolver(t, resolver.Options{Attempts: 1}, s)
			addrs, secure, err := r.LookupIPSecure(t.Context(), tt.host)
			checkErr(t, err, tt.wantErr)
			if len(addrs) != tt.want || secure != tt.wantSecure {
				t.Errorf("LookupIPSecure(%s) = %v, secure %v; want %d addresses, secure %v", tt.host, addrs, secure, tt.want, tt.wantSecure)
			}
		})
	}
}

// The query bits: every query asks for AD, TLSA queries also set DO; a
// server that answers AD only to DO (some validating servers do) still
// gets TLSA answers counted as secure.
func TestQueryAsksForDNSSEC(t *testing.T) {
	type bits struct{ ad, do bool }
	seen := make(chan bits, 4)
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		opt := req.IsEdns0()
		b := bits{ad: req.AuthenticatedData, do: opt != nil && opt.Do()}
		seen <- b
		m := new(dns.Msg)
		m.SetReply(req)
		m.AuthenticatedData = b.do
		_ = w.WriteMsg(m) // NODATA
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})

	r, err := resolver.New(resolver.Options{Servers: []string{pc.LocalAddr().String()}, Attempts: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, secure, err := r.TLSA(t.Context(), "_25._tcp.mx.test"); err != nil || !secure {
		t.Errorf("TLSA from a server that sets AD only for DO: secure %v, err %v", secure, err)
	}
	if b := <-seen; !b.ad || !b.do {
		t.Errorf("TLSA query: AD %v, DO %v; want both", b.ad, b.do)
	}
	if _, err := r.TXT(t.Context(), "mx.test"); err != nil {
		t.Fatal(err)
	}
	if b := <-seen; !b.ad || b.do {
		t.Errorf("TXT query: AD %v, DO %v; want AD only", b.ad, b.do)
	}
}

// TestRouteSecure: the MX list is secure when the MX answer carries the AD
// bit; an implicit MX needs the address answer's too (RFC 8689 §4.2.1
// asks which for REQUIRETLS).
func TestRouteSecure(t *testing.T) {
	const zone = `
test.           3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
signed.test.         IN MX 10 mx.signed.test.
plain.test.          IN MX 10 mx.plain.test.
implicit.test.       IN A 192.0.2.7
`
	for _, tc := range []struct {
		domain string
		ad     []string
		want   bool
	}{
		{"signed.test", []string{"signed.test"}, true},
		{"plain.test", nil, false},
		{"implicit.test", []string{"implicit.test"}, true},
		{"implicit.test", nil, false},
	} {
		srv := resolvertest.Start(t, zone)
		for _, n := range tc.ad {
			srv.SetAD(n, true)
		}
		r, err := resolver.New(resolver.Options{Servers: []string{srv.Addr()}, Timeout: time.Second, Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		mxs, secure, err := r.RouteSecure(t.Context(), tc.domain)
		if err != nil || len(mxs) != 1 || secure != tc.want {
			t.Errorf("RouteSecure(%s) with AD on %v = %v, %v, %v; want one MX, secure %v", tc.domain, tc.ad, mxs, secure, err, tc.want)
		}
	}
}
