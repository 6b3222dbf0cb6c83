package resolvertest

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const zone = `
$ORIGIN example.test.
$TTL 120
@        3600 IN SOA ns hostmaster 1 3600 600 86400 30
@             IN MX  10 mx
mx            IN A   127.0.0.1
www           IN CNAME mx
a.b           IN TXT "deep"
`

// ask sends one query over net ("udp" or "tcp") and fails the test on a
// transport error.
func ask(t *testing.T, s *Server, net, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	resp, _, err := c.Exchange(m, s.Addr())
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, name, dns.TypeToString[qtype], err)
	}
	return resp
}

func TestAnswers(t *testing.T) {
	s := Start(t, zone)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:port", s.Addr())
	}
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		wantRcode int
		want      []string // answer RRs as text
		wantSOA   bool
	}{
		{"data", "example.test.", dns.TypeMX, dns.RcodeSuccess, []string{"example.test.\t120\tIN\tMX\t10 mx.example.test."}, false},
		{"case-insensitive", "MX.Example.TEST.", dns.TypeA, dns.RcodeSuccess, []string{"mx.example.test.\t120\tIN\tA\t127.0.0.1"}, false},
		{"CNAME chased", "www.example.test.", dns.TypeA, dns.RcodeSuccess, []string{
			"www.example.test.\t120\tIN\tCNAME\tmx.example.test.",
			"mx.example.test.\t120\tIN\tA\t127.0.0.1",
		}, false},
		{"NODATA", "mx.example.test.", dns.TypeAAAA, dns.RcodeSuccess, nil, true},
		{"empty non-terminal is NODATA", "b.example.test.", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"NXDOMAIN", "nope.example.test.", dns.TypeA, dns.RcodeNameError, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, network := range []string{"udp", "tcp"} {
				resp := ask(t, s, network, tt.qname, tt.qtype)
				if resp.Rcode != tt.wantRcode {
					t.Errorf("%s: rcode = %s, want %s", network, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.wantRcode])
				}
				var got []string
				for _, rr := range resp.Answer {
					got = append(got, rr.String())
				}
				if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
					t.Errorf("%s: answer =\n%s\nwant\n%s", network, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
				}
				hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
				if hasSOA != tt.wantSOA {
					t.Errorf("%s: authority = %v, want SOA: %v", network, resp.Ns, tt.wantSOA)
				}
			}
			if n, tcp := s.Queries(tt.qname, tt.qtype), s.TCPQueries(tt.qname, tt.qtype); n != 2 || tcp != 1 {
				t.Errorf("Queries = %d, TCPQueries = %d; want 2, 1", n, tcp)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	s := Start(t, zone)
	s.SetFault("mx.example.test", dns.TypeNone, ServFail)
	if resp := ask(t, s, "udp", "mx.example.test.", dns.TypeA); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("ServFail: rcode = %s", dns.RcodeToString[resp.Rcode])
	}
	s.SetFault("mx.example.test", dns.TypeA, Refused) // a type-specific fault beats the any-type one
	if resp := ask(t, s, "udp", "mx.example.test.", dns.TypeA); resp.Rcode != dns.RcodeRefused {
		t.Errorf("Refused: rcode = %s", dns.RcodeToString[resp.Rcode])
	}
	s.SetFault("mx.example.test", dns.TypeA, Truncate)
	if resp := ask(t, s, "udp", "mx.example.test.", dns.TypeA); !resp.Truncated || len(resp.Answer) != 0 {
		t.Errorf("Truncate over UDP: got TC=%v with %d answers, want TC and none", resp.Truncated, len(resp.Answer))
	}
	if resp := ask(t, s, "tcp", "mx.example.test.", dns.TypeA); resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("Truncate over TCP: got TC=%v with %d answers, want a full answer", resp.Truncated, len(resp.Answer))
	}
	s.SetFault("mx.example.test", dns.TypeA, Drop)
	c := &dns.Client{Net: "udp", Timeout: 100 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("mx.example.test.", dns.TypeA)
	if _, _, err := c.Exchange(m, s.Addr()); err == nil {
		t.Errorf("Drop: got an answer, want a timeout")
	}
	s.SetFault("mx.example.test", dns.TypeA, NoFault)
	s.SetFault("mx.example.test", dns.TypeNone, NoFault)
	if resp := ask(t, s, "udp", "mx.example.test.", dns.TypeA); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("after clearing: rcode %s, %d answers", dns.RcodeToString[resp.Rcode], len(resp.Answer))
	}
	if n := s.TotalQueries(); n != 6 {
		t.Errorf("TotalQueries = %d, want 6", n)
	}
}

func TestNoChaseAndReplace(t *testing.T) {
	s := Start(t, zone)
	s.SetCNAMEChase(false)
	if resp := ask(t, s, "udp", "www.example.test.", dns.TypeA); len(resp.Answer) != 1 || resp.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Errorf("without chasing: answer = %v, want the CNAME only", resp.Answer)
	}
	s.Replace(t, "www.example.test. 60 IN A 192.0.2.1\n")
	if resp := ask(t, s, "udp", "www.example.test.", dns.TypeA); len(resp.Answer) != 1 || resp.Answer[0].String() != "www.example.test.\t60\tIN\tA\t192.0.2.1" {
		t.Errorf("after Replace: answer = %v", resp.Answer)
	}
	if resp := ask(t, s, "udp", "mx.example.test.", dns.TypeA); resp.Rcode != dns.RcodeNameError || len(resp.Ns) != 0 {
		t.Errorf("after Replace, a zone without SOA: rcode %s, authority %v; want NXDOMAIN and none", dns.RcodeToString[resp.Rcode], resp.Ns)
	}
}

func TestBadZone(t *testing.T) {
	s := &Server{}
	if err := s.load("example.test. IN MX notanumber mx.example.test.\n"); err == nil {
		t.Errorf("load of a bad zone: got no error")
	}
}

func TestADBit(t *testing.T) {
	const adZone = `
$ORIGIN example.test.
@          3600 IN SOA ns hostmaster 1 3600 600 86400 30
_25._tcp.mx     IN TLSA 3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
_25._tcp.alias  IN CNAME _25._tcp.mx
mx              IN A 127.0.0.1
`
	tests := []struct {
		name      string
		secure    bool            // SetSecure
		ad        map[string]bool // SetAD
		qname     string
		qtype     uint16
		askAD     bool
		askDO     bool
		wantAD    bool
		wantRcode int
	}{
		{"zone secure, asked with AD", true, nil, "_25._tcp.mx.example.test.", dns.TypeTLSA, true, false, true, dns.RcodeSuccess},
		{"zone secure, asked with DO", true, nil, "_25._tcp.mx.example.test.", dns.TypeTLSA, false, true, true, dns.RcodeSuccess},
		{"zone secure, not asked", true, nil, "_25._tcp.mx.example.test.", dns.TypeTLSA, false, false, false, dns.RcodeSuccess},
		{"zone insecure", false, nil, "_25._tcp.mx.example.test.", dns.TypeTLSA, true, true, false, dns.RcodeSuccess},
		{"name secure in an insecure zone", false, map[string]bool{"_25._tcp.mx.example.test": true}, "_25._tcp.mx.example.test.", dns.TypeTLSA, true, true, true, dns.RcodeSuccess},
		{"name insecure in a secure zone", true, map[string]bool{"_25._tcp.mx.example.test": false}, "_25._tcp.mx.example.test.", dns.TypeTLSA, true, true, false, dns.RcodeSuccess},
		{"secure NXDOMAIN", true, nil, "_25._tcp.nope.example.test.", dns.TypeTLSA, true, false, true, dns.RcodeNameError},
		{"secure NODATA", true, nil, "mx.example.test.", dns.TypeTLSA, true, false, true, dns.RcodeSuccess},
		{"CNAME chain secure", true, nil, "_25._tcp.alias.example.test.", dns.TypeTLSA, true, true, true, dns.RcodeSuccess},
		{"CNAME target insecure", true, map[string]bool{"_25._tcp.mx.example.test": false}, "_25._tcp.alias.example.test.", dns.TypeTLSA, true, true, false, dns.RcodeSuccess},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Start(t, adZone)
			s.SetSecure(tt.secure)
			for n, on := range tt.ad {
				s.SetAD(n, on)
			}
			c := &dns.Client{Net: "udp", Timeout: time.Second}
			m := new(dns.Msg)
			m.SetQuestion(tt.qname, tt.qtype)
			m.AuthenticatedData = tt.askAD
			if tt.askDO {
				m.SetEdns0(1232, true)
			}
			resp, _, err := c.Exchange(m, s.Addr())
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if resp.AuthenticatedData != tt.wantAD || resp.Rcode != tt.wantRcode {
				t.Errorf("AD = %v, rcode %s; want AD = %v, rcode %s", resp.AuthenticatedData, dns.RcodeToString[resp.Rcode], tt.wantAD, dns.RcodeToString[tt.wantRcode])
			}
			if opt := resp.IsEdns0(); tt.askDO && (opt == nil || !opt.Do()) {
				t.Errorf("DO was not echoed: OPT %v", opt)
			}
		})
	}
}

func TestServesTLSA(t *testing.T) {
	s := Start(t, "_25._tcp.mx.example.test. 60 IN TLSA 2 0 2 "+strings.Repeat("ab", 64)+"\n")
	resp := ask(t, s, "udp", "_25._tcp.mx.example.test.", dns.TypeTLSA)
	if len(resp.Answer) != 1 {
		t.Fatalf("answer = %v, want one TLSA", resp.Answer)
	}
	got, ok := resp.Answer[0].(*dns.TLSA)
	if !ok || got.Usage != 2 || got.Selector != 0 || got.MatchingType != 2 || got.Certificate != strings.Repeat("ab", 64) {
		t.Errorf("answer = %v, want TLSA 2 0 2 ab…", resp.Answer[0])
	}
}
