package dane_test

import (
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/dane"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

func TestLookup(t *testing.T) {
	const zone = `
example.test.              3600 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
mx.example.test.             60 IN A 127.0.0.1
_25._tcp.mx.example.test.    60 IN TLSA 3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
_25._tcp.mx.example.test.    60 IN TLSA 1 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
pkix.example.test.           60 IN A 127.0.0.1
_25._tcp.pkix.example.test.  60 IN TLSA 0 0 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
bare.example.test.           60 IN A 127.0.0.1
`
	tests := []struct {
		name      string
		host      string
		secure    bool
		ad        map[string]bool
		fault     string // a name whose queries SERVFAIL
		want      dane.Level
		wantUse   int
		wantAll   int
		wantErr   bool
		wantTLSAq int // TLSA queries the server saw
	}{
		{"secure, usable", "mx.example.test", true, nil, "", dane.LevelVerify, 1, 2, false, 1},
		{"secure, none usable", "pkix.example.test", true, nil, "", dane.LevelEncrypt, 0, 1, false, 1},
		{"secure, no records", "bare.example.test", true, nil, "", dane.LevelNone, 0, 0, false, 1},
		{"TLSA insecure", "mx.example.test", true, map[string]bool{"_25._tcp.mx.example.test": false}, "", dane.LevelNone, 0, 0, false, 1},
		{"addresses insecure: no TLSA query", "mx.example.test", true, map[string]bool{"mx.example.test": false}, "", dane.LevelNone, 0, 0, false, 0},
		{"zone insecure", "mx.example.test", false, nil, "", dane.LevelNone, 0, 0, false, 0},
		{"TLSA SERVFAIL (bogus)", "mx.example.test", true, nil, "_25._tcp.mx.example.test", dane.LevelNone, 0, 0, true, 1},
		{"addresses SERVFAIL", "mx.example.test", true, nil, "mx.example.test", dane.LevelNone, 0, 0, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := resolvertest.Start(t, zone)
			s.SetSecure(tt.secure)
			for n, on := range tt.ad {
				s.SetAD(n, on)
			}
			if tt.fault != "" {
				s.SetFault(tt.fault, dns.TypeNone, resolvertest.ServFail)
			}
			r, err := resolver.New(resolver.Options{Servers: []string{s.Addr()}, Attempts: 1, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			p, err := dane.Lookup(t.Context(), r, tt.host)
			if (err != nil) != tt.wantErr || (err != nil && !resolver.IsTemporary(err)) {
				t.Fatalf("Lookup: %v, want error %v (temporary)", err, tt.wantErr)
			}
			if p.Level != tt.want || len(p.Usable) != tt.wantUse || len(p.All) != tt.wantAll {
				t.Errorf("Lookup = level %d, %d usable of %d; want level %d, %d of %d", p.Level, len(p.Usable), len(p.All), tt.want, tt.wantUse, tt.wantAll)
			}
			if n := s.Queries("_25._tcp."+tt.host, dns.TypeTLSA); n != tt.wantTLSAq {
				t.Errorf("server saw %d TLSA queries, want %d", n, tt.wantTLSAq)
			}
		})
	}
}
