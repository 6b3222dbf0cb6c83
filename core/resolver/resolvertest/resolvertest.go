// Package resolvertest runs a DNS server on 127.0.0.1 for tests of code that
// uses core/resolver. The server answers from a zone written as RFC 1035
// zone-file text, like a recursive server would: CNAME chains are followed in
// the answer, unknown names get NXDOMAIN and known names without the asked
// type get NODATA, both with the zone's SOA in the authority section. Tests
// can make it fail on purpose per name (SERVFAIL, REFUSED, no answer,
// truncation, delay) and count the queries it received.
//
// Like a validating recursive server, it can vouch for answers with the AD
// bit (RFC 4035 §3.2.3), zone-wide (SetSecure) or per name (SetAD); it sets
// the bit only for a query that asked with AD or DO (RFC 6840 §5.7, §5.8),
// and only when every name the answer passes through (a CNAME chain) is
// secure. It signs nothing: no RRSIG is served, the bit is all it gives.
//
//	s := resolvertest.Start(t, `
//	example.test.     300 IN MX 10 mx1.example.test.
//	mx1.example.test. 300 IN A  127.0.0.1
//	`)
//	r, _ := resolver.New(resolver.Options{Servers: []string{s.Addr()}})
package resolvertest

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault is a failure the server produces on purpose.
type Fault int

const (
	// NoFault answers normally.
	NoFault Fault = iota
	// ServFail answers with RCODE SERVFAIL.
	ServFail
	// Refused answers with RCODE REFUSED.
	Refused
	// Drop sends no answer, so the client times out.
	Drop
	// Truncate answers over UDP with an empty, truncated (TC) message, so the
	// client has to retry over TCP, where the answer is normal.
	Truncate
)

func (f Fault) String() string {
	switch f {
	case NoFault:
		return "none"
	case ServFail:
		return "servfail"
	case Refused:
		return "refused"
	case Drop:
		return "drop"
	case Truncate:
		return "truncate"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Server is a DNS server on 127.0.0.1 serving UDP and TCP on one port. It is
// shut down by the test's Cleanup.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	done chan struct{} // closed at shutdown, ends delays

	mu     sync.Mutex
	zone   map[key][]dns.RR
	names  map[string]bool // owner names and their ancestors (empty non-terminals)
	soas   []*dns.SOA
	chase  bool
	faults map[key]Fault
	delays map[key]time.Duration
	counts map[key]*count
	secure bool            // the AD bit for names not in ad
	ad     map[string]bool // per name (lower case, fully qualified)
}

type key struct {
	name  string // lower case, fully qualified
	qtype uint16
}

type count struct{ udp, tcp int }

// Start parses zone (RFC 1035 master-file text; names should be fully
// qualified, $ORIGIN and $TTL work) and starts a server for it. It fails the
// test if the zone does not parse or the server cannot listen. Call it from
// the test's goroutine.
func Start(t testing.TB, zone string) *Server {
	t.Helper()
	s := &Server{
		chase:  true,
		faults: make(map[key]Fault),
		delays: make(map[key]time.Duration),
		counts: make(map[key]*count),
		ad:     make(map[string]bool),
		done:   make(chan struct{}),
	}
	if err := s.load(zone); err != nil {
		t.Fatalf("resolvertest: %v", err)
	}

	pc, l, err := listen()
	if err != nil {
		t.Fatalf("resolvertest: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: l, Handler: h}

	errc := make(chan error, 2)
	startedc := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { startedc <- struct{}{} }
		go func() {
			defer func() {
				if p := recover(); p != nil {
					errc <- fmt.Errorf("panic: %v", p)
				}
			}()
			errc <- srv.ActivateAndServe()
		}()
	}
	// Each server either starts or fails to; wait for both outcomes.
	var startErr error
	running := 0
	for range 2 {
		select {
		case <-startedc:
			running++
		case err := <-errc:
			startErr = err
		}
	}
	if startErr != nil {
		close(s.done)
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
		for range running {
			<-errc
		}
		t.Fatalf("resolvertest: serve: %v", startErr)
	}

	t.Cleanup(func() {
		close(s.done)
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if err := srv.Shutdown(); err != nil {
				t.Errorf("resolvertest: shutdown: %v", err)
			}
		}
		for range 2 {
			if err := <-errc; err != nil {
				t.Errorf("resolvertest: serve: %v", err)
			}
		}
	})
	return s
}

// listen opens UDP and TCP on the same loopback port.
func listen() (net.PacketConn, net.Listener, error) {
	var last error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		last = err
	}
	return nil, nil, fmt.Errorf("listen on one port for udp and tcp: %w", last)
}

// Addr returns the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.addr }

// Replace swaps the zone for a new one; faults, delays and counters stay.
func (s *Server) Replace(t testing.TB, zone string) {
	t.Helper()
	if err := s.load(zone); err != nil {
		t.Fatalf("resolvertest: %v", err)
	}
}

// SetFault makes queries for name and qtype fail with f; qtype 0
// (dns.TypeNone) means every type. NoFault clears it.
func (s *Server) SetFault(name string, qtype uint16, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{canonical(name), qtype}
	if f == NoFault {
		delete(s.faults, k)
		return
	}
	s.faults[k] = f
}

// SetDelay delays answers for name and qtype by d; qtype 0 means every type.
func (s *Server) SetDelay(name string, qtype uint16, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delays[key{canonical(name), qtype}] = d
}

// SetCNAMEChase sets whether answers include the records a CNAME points to
// (the default, like a recursive server) or stop at the first CNAME, so the
// client has to ask for the target itself.
func (s *Server) SetCNAMEChase(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chase = on
}

// SetSecure sets whether answers carry the AD bit by default (off at
// Start): on, the server behaves as a validating resolver for a signed zone.
func (s *Server) SetSecure(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secure = on
}

// SetAD sets the AD bit for answers about name, overriding SetSecure: an
// answer (or a denial) is secure when every name it passes through is.
func (s *Server) SetAD(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ad[canonical(name)] = on
}

// Queries returns how many queries for name and qtype arrived, over UDP and
// TCP together.
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.counts[key{canonical(name), qtype}]; c != nil {
		return c.udp + c.tcp
	}
	return 0
}

// TCPQueries returns how many queries for name and qtype arrived over TCP.
func (s *Server) TCPQueries(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.counts[key{canonical(name), qtype}]; c != nil {
		return c.tcp
	}
	return 0
}

// TotalQueries returns how many queries arrived in all.
func (s *Server) TotalQueries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.counts {
		n += c.udp + c.tcp
	}
	return n
}

func canonical(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func (s *Server) load(text string) error {
	zone := make(map[key][]dns.RR)
	names := make(map[string]bool)
	var soas []*dns.SOA
	zp := dns.NewZoneParser(strings.NewReader(text), ".", "zone")
	zp.SetDefaultTTL(300)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		name := canonical(h.Name)
		k := key{name, h.Rrtype}
		zone[k] = append(zone[k], rr)
		for n := name; ; {
			names[n] = true
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
		}
		if soa, ok := rr.(*dns.SOA); ok {
			soas = append(soas, soa)
		}
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zone, s.names, s.soas = zone, names, soas
	return nil
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	k := key{canonical(q.Name), q.Qtype}
	_, overTCP := w.RemoteAddr().(*net.TCPAddr)

	s.mu.Lock()
	c := s.counts[k]
	if c == nil {
		c = new(count)
		s.counts[k] = c
	}
	if overTCP {
		c.tcp++
	} else {
		c.udp++
	}
	fault, ok := s.faults[k]
	if !ok {
		fault = s.faults[key{k.name, dns.TypeNone}]
	}
	delay, ok := s.delays[k]
	if !ok {
		delay = s.delays[key{k.name, dns.TypeNone}]
	}
	s.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-s.done:
			return
		}
	}

	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch fault {
	case Drop:
		return
	case ServFail:
		m.Rcode = dns.RcodeServerFailure
	case Refused:
		m.Rcode = dns.RcodeRefused
	case Truncate:
		if !overTCP {
			m.Truncated = true
			break
		}
		s.respond(m, req, k)
	default:
		s.respond(m, req, k)
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	_ = w.WriteMsg(m) // on error the client sees a timeout
}

// respond fills m for k from the zone and sets the AD bit when the query
// asked for it (AD or DO) and every name of the answer is secure.
func (s *Server) respond(m, req *dns.Msg, k key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.answer(m, k)
	opt := req.IsEdns0()
	if !req.AuthenticatedData && (opt == nil || !opt.Do()) {
		return
	}
	m.AuthenticatedData = true
	for _, n := range names {
		on, ok := s.ad[n]
		if !ok {
			on = s.secure
		}
		m.AuthenticatedData = m.AuthenticatedData && on
	}
}

// answer fills m for k from the zone and returns the names the answer
// passes through (the question's, then each CNAME's target). s.mu is held.
func (s *Server) answer(m *dns.Msg, k key) []string {
	name := k.name
	names := []string{name}
	for range 16 {
		if rrs := s.zone[key{name, k.qtype}]; len(rrs) > 0 {
			m.Answer = append(m.Answer, copyRRs(rrs, name)...)
			return names
		}
		cn := s.zone[key{name, dns.TypeCNAME}]
		if len(cn) == 0 || k.qtype == dns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, copyRRs(cn[:1], name)...)
		if !s.chase {
			return names
		}
		name = canonical(cn[0].(*dns.CNAME).Target)
		names = append(names, name)
	}
	if !s.names[name] {
		m.Rcode = dns.RcodeNameError
	}
	if soa := s.soaFor(name); soa != nil {
		m.Ns = append(m.Ns, dns.Copy(soa))
	}
	return names
}

// soaFor returns the SOA of the closest enclosing zone in the data, or nil.
func (s *Server) soaFor(name string) *dns.SOA {
	var best *dns.SOA
	for _, soa := range s.soas {
		owner := canonical(soa.Hdr.Name)
		if dns.IsSubDomain(owner, name) && (best == nil || len(owner) > len(canonical(best.Hdr.Name))) {
			best = soa
		}
	}
	return best
}

func copyRRs(rrs []dns.RR, owner string) []dns.RR {
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = owner
		out = append(out, c)
	}
	return out
}
