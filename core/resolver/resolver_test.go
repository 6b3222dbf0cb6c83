package resolver_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// zone is served by most tests. The SOA gives a negative TTL of 60s.
const zone = `
$TTL 300
test.                 3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60

order.test.           IN MX 30 C.order.test.
order.test.           IN MX 10 a.order.test.
order.test.           IN MX 20 b.order.test.
equal.test.           IN MX 10 a.equal.test.
equal.test.           IN MX 10 b.equal.test.
equal.test.           IN MX 20 c.equal.test.
implicit.test.        IN A    192.0.2.1
implicit6.test.       IN AAAA 2001:db8::1
null.test.            IN MX 0 .
null.test.            IN A    192.0.2.9
nullmixed.test.       IN MX 0 .
nullmixed.test.       IN MX 10 mx.nullmixed.test.
nodata.test.          IN TXT  "no mail here"
alias.test.           IN CNAME real.test.
real.test.            IN MX 10 mx.real.test.
aliasimplicit.test.   IN CNAME host.test.
host.test.            IN A    192.0.2.2
xn--bcher-kva.test.   IN MX 10 mx.xn--bcher-kva.test.
dangling.test.        IN CNAME gone.test.
servfail.test.        IN MX 10 mx.servfail.test.

dual.test.            IN A    192.0.2.10
dual.test.            IN A    192.0.2.11
dual.test.            IN AAAA 2001:db8::10
mxalias.test.         IN MX 10 mx.mxalias.test.
mx.mxalias.test.      IN CNAME box.test.
box.test.             IN A    192.0.2.20
chain1.test.          IN CNAME chain2.test.
chain2.test.          IN CNAME chain3.test.
chain3.test.          IN A    192.0.2.30
loop1.test.           IN CNAME loop2.test.
loop2.test.           IN CNAME loop1.test.
a.deep.test.          IN A    192.0.2.40

txt.test.             IN TXT "v=spf1 " "ip4:192.0.2.0/24 " "-all"
txt.test.             IN TXT "hello"
1.2.0.192.in-addr.arpa. IN PTR Mail.Example.test.
1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR v6.example.test.
`

// clock is a settable time source for cache tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newResolver returns a Resolver that asks only the given test servers.
func newResolver(t testing.TB, opt resolver.Options, servers ...*resolvertest.Server) *resolver.Resolver {
	t.Helper()
	for _, s := range servers {
		opt.Servers = append(opt.Servers, s.Addr())
	}
	if opt.Timeout == 0 {
		opt.Timeout = time.Second
	}
	if opt.Rand == nil {
		opt.Rand = rand.New(rand.NewPCG(1, 2))
	}
	r, err := resolver.New(opt)
	if err != nil {
		t.Fatalf("resolver.New: %v", err)
	}
	return r
}

// checkErr compares err with want: nil, a sentinel, or ErrTemporary.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("got error %v, want none", err)
	case want == nil:
		return
	case !errors.Is(err, want):
		t.Fatalf("got error %v, want one wrapping %v", err, want)
	}
	if got, wantTemp := resolver.IsTemporary(err), errors.Is(want, resolver.ErrTemporary) || errors.Is(want, context.Canceled) || errors.Is(want, context.DeadlineExceeded); got != wantTemp {
		t.Errorf("IsTemporary(%v) = %v, want %v", err, got, wantTemp)
	}
}

func TestRoute(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetFault("servfail.test", dns.TypeMX, resolvertest.ServFail)
	r := newResolver(t, resolver.Options{Timeout: 500 * time.Millisecond}, s)

	tests := []struct {
		name    string
		domain  string
		want    []resolver.MX
		wantErr error
	}{
		{"preference order", "order.test", []resolver.MX{{"a.order.test", 10}, {"b.order.test", 20}, {"c.order.test", 30}}, nil},
		{"case and trailing dot", "ORDER.Test.", []resolver.MX{{"a.order.test", 10}, {"b.order.test", 20}, {"c.order.test", 30}}, nil},
		{"implicit MX from A", "implicit.test", []resolver.MX{{"implicit.test", 0}}, nil},
		{"implicit MX from AAAA", "implicit6.test", []resolver.MX{{"implicit6.test", 0}}, nil},
		{"null MX beats an address", "null.test", nil, resolver.ErrNullMX},
		{"null MX next to a real one is ignored", "nullmixed.test", []resolver.MX{{"mx.nullmixed.test", 10}}, nil},
		{"NXDOMAIN", "nx.test", nil, resolver.ErrNotFound},
		{"NXDOMAIN under a CNAME", "dangling.test", nil, resolver.ErrNotFound},
		{"NODATA MX and no address", "nodata.test", nil, resolver.ErrNoAddress},
		{"empty non-terminal", "deep.test", nil, resolver.ErrNoAddress},
		{"CNAME on the domain", "alias.test", []resolver.MX{{"mx.real.test", 10}}, nil},
		{"implicit MX through a CNAME is the canonical name", "aliasimplicit.test", []resolver.MX{{"host.test", 0}}, nil},
		{"CNAME on the MX host is left to LookupIP", "mxalias.test", []resolver.MX{{"mx.mxalias.test", 10}}, nil},
		{"IDNA U-label", "Bücher.test", []resolver.MX{{"mx.xn--bcher-kva.test", 10}}, nil},
		{"SERVFAIL", "servfail.test", nil, resolver.ErrTemporary},
		{"empty name", "", nil, resolver.ErrInvalidName},
		{"space in name", "a b.test", nil, resolver.ErrInvalidName},
		{"empty label", "a..test", nil, resolver.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Route(t.Context(), tt.domain)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Route(%q) mismatch (-want +got):\n%s", tt.domain, diff)
			}
		})
	}
}

func TestRouteEqualPreferenceShuffled(t *testing.T) {
	s := resolvertest.Start(t, zone)
	r := newResolver(t, resolver.Options{}, s)

	first := map[string]int{}
	for range 200 {
		got, err := r.Route(t.Context(), "equal.test")
		if err != nil {
			t.Fatalf("Route: %v", err)
		}
		if len(got) != 3 || got[2] != (resolver.MX{Host: "c.equal.test", Preference: 20}) {
			t.Fatalf("Route = %v, want c.equal.test last", got)
		}
		first[got[0].Host]++
	}
	if first["a.equal.test"] < 50 || first["b.equal.test"] < 50 {
		t.Errorf("first host counts over 200 calls = %v, want both a and b often", first)
	}
	if n := s.Queries("equal.test", dns.TypeMX); n != 1 {
		t.Errorf("server saw %d MX queries, want 1 (the shuffle is per call, over the cached answer)", n)
	}
}

func TestRouteSeededRandIsDeterministic(t *testing.T) {
	s := resolvertest.Start(t, zone)
	order := func() []string {
		r := newResolver(t, resolver.Options{Rand: rand.New(rand.NewPCG(7, 7))}, s)
		var hosts []string
		for range 20 {
			got, err := r.Route(t.Context(), "equal.test")
			if err != nil {
				t.Fatalf("Route: %v", err)
			}
			hosts = append(hosts, got[0].Host)
		}
		return hosts
	}
	if a, b := order(), order(); !slices.Equal(a, b) {
		t.Errorf("same seed gave different orders:\n%v\n%v", a, b)
	}
}

func TestMX(t *testing.T) {
	s := resolvertest.Start(t, zone)
	r := newResolver(t, resolver.Options{}, s)

	tests := []struct {
		name    string
		domain  string
		want    []resolver.MX
		wantErr error
	}{
		{"sorted", "order.test", []resolver.MX{{"a.order.test", 10}, {"b.order.test", 20}, {"c.order.test", 30}}, nil},
		{"null MX is returned raw", "null.test", []resolver.MX{{".", 0}}, nil},
		{"null MX next to a real one", "nullmixed.test", []resolver.MX{{".", 0}, {"mx.nullmixed.test", 10}}, nil},
		{"NODATA is empty", "implicit.test", nil, nil},
		{"NXDOMAIN", "nx.test", nil, resolver.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.MX(t.Context(), tt.domain)
			checkErr(t, err, tt.wantErr)
			if len(tt.want) == 0 && len(got) == 0 {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MX(%q) mismatch (-want +got):\n%s", tt.domain, diff)
			}
		})
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestLookupIP(t *testing.T) {
	long := "$TTL 300\n"
	for i := range 9 { // long0 → … → long8 → long9 (A): 9 CNAMEs
		long += "long" + string(rune('0'+i)) + ".test. IN CNAME long" + string(rune('1'+i)) + ".test.\n"
	}
	long += "long9.test. IN A 192.0.2.99\n"

	tests := []struct {
		name    string
		host    string
		noChase bool
		want    []netip.Addr
		wantErr error
	}{
		{"A and AAAA, IPv4 first", "dual.test", false, addrs("192.0.2.10", "192.0.2.11", "2001:db8::10"), nil},
		{"AAAA only", "implicit6.test", false, addrs("2001:db8::1"), nil},
		{"CNAME chain in one answer", "chain1.test", false, addrs("192.0.2.30"), nil},
		{"CNAME chain across queries", "chain1.test", true, addrs("192.0.2.30"), nil},
		{"CNAME on an MX host", "mx.mxalias.test", false, addrs("192.0.2.20"), nil},
		{"eight CNAMEs are followed", "long1.test", false, addrs("192.0.2.99"), nil},
		{"nine CNAMEs are too many", "long0.test", false, nil, resolver.ErrTemporary},
		{"nine CNAMEs across queries", "long0.test", true, nil, resolver.ErrTemporary},
		{"CNAME loop", "loop1.test", false, nil, resolver.ErrTemporary},
		{"CNAME loop across queries", "loop1.test", true, nil, resolver.ErrTemporary},
		{"NXDOMAIN", "nx.test", false, nil, resolver.ErrNotFound},
		{"dangling CNAME", "dangling.test", false, nil, resolver.ErrNotFound},
		{"dangling CNAME across queries", "dangling.test", true, nil, resolver.ErrNotFound},
		{"NODATA", "nodata.test", false, nil, resolver.ErrNoAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := resolvertest.Start(t, zone+long)
			s.SetCNAMEChase(!tt.noChase)
			r := newResolver(t, resolver.Options{}, s)
			got, err := r.LookupIP(t.Context(), tt.host)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("LookupIP(%q) mismatch (-want +got):\n%s", tt.host, diff)
			}
		})
	}
}

func TestLookupIPOneFamilyFails(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetFault("dual.test", dns.TypeAAAA, resolvertest.ServFail)
	r := newResolver(t, resolver.Options{}, s)
	got, err := r.LookupIP(t.Context(), "dual.test")
	if err != nil {
		t.Fatalf("LookupIP: %v", err)
	}
	if want := addrs("192.0.2.10", "192.0.2.11"); !slices.Equal(got, want) {
		t.Errorf("LookupIP = %v, want %v", got, want)
	}

	s.SetFault("nodata.test", dns.TypeAAAA, resolvertest.ServFail)
	_, err = r.LookupIP(t.Context(), "nodata.test")
	checkErr(t, err, resolver.ErrTemporary)
}

func TestTXT(t *testing.T) {
	s := resolvertest.Start(t, zone)
	r := newResolver(t, resolver.Options{}, s)
	tests := []struct {
		name    string
		qname   string
		want    []string
		wantErr error
	}{
		{"strings of each record joined", "txt.test", []string{"v=spf1 ip4:192.0.2.0/24 -all", "hello"}, nil},
		{"NODATA is empty", "implicit.test", nil, nil},
		{"NXDOMAIN", "nx.test", nil, resolver.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.TXT(t.Context(), tt.qname)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("TXT(%q) mismatch (-want +got):\n%s", tt.qname, diff)
			}
		})
	}
}

func TestPTR(t *testing.T) {
	s := resolvertest.Start(t, zone)
	r := newResolver(t, resolver.Options{}, s)
	tests := []struct {
		name    string
		ip      netip.Addr
		want    []string
		wantErr error
	}{
		{"IPv4", netip.MustParseAddr("192.0.2.1"), []string{"mail.example.test"}, nil},
		{"IPv4-mapped IPv6", netip.MustParseAddr("::ffff:192.0.2.1"), []string{"mail.example.test"}, nil},
		{"IPv6", netip.MustParseAddr("2001:db8::1"), []string{"v6.example.test"}, nil},
		{"NXDOMAIN", netip.MustParseAddr("192.0.2.2"), nil, resolver.ErrNotFound},
		{"invalid address", netip.Addr{}, nil, resolver.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.PTR(t.Context(), tt.ip)
			checkErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("PTR(%v) mismatch (-want +got):\n%s", tt.ip, diff)
			}
		})
	}
}

func TestDomainExists(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetFault("servfail.test", dns.TypeMX, resolvertest.ServFail)
	r := newResolver(t, resolver.Options{}, s)
	tests := []struct {
		domain  string
		want    bool
		wantErr error
	}{
		{"order.test", true, nil},
		{"implicit.test", true, nil},
		{"alias.test", true, nil},
		{"null.test", false, nil},
		{"nx.test", false, nil},
		{"nodata.test", false, nil},
		{"servfail.test", false, resolver.ErrTemporary},
		{"a b.test", false, resolver.ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			got, err := r.DomainExists(t.Context(), tt.domain)
			checkErr(t, err, tt.wantErr)
			if got != tt.want {
				t.Errorf("DomainExists(%q) = %v, want %v", tt.domain, got, tt.want)
			}
		})
	}
}

func TestServerFailover(t *testing.T) {
	for _, f := range []resolvertest.Fault{resolvertest.ServFail, resolvertest.Refused, resolvertest.Drop} {
		t.Run(f.String(), func(t *testing.T) {
			bad, good := resolvertest.Start(t, zone), resolvertest.Start(t, zone)
			bad.SetFault("order.test", dns.TypeNone, f)
			r := newResolver(t, resolver.Options{Timeout: 100 * time.Millisecond}, bad, good)
			got, err := r.Route(t.Context(), "order.test")
			if err != nil {
				t.Fatalf("Route: %v", err)
			}
			if len(got) != 3 {
				t.Errorf("Route = %v, want 3 hosts", got)
			}
			if n := bad.Queries("order.test", dns.TypeMX); n != 1 {
				t.Errorf("first server saw %d queries, want 1", n)
			}
			if n := good.Queries("order.test", dns.TypeMX); n != 1 {
				t.Errorf("second server saw %d queries, want 1", n)
			}
		})
	}
}

func TestAllServersFail(t *testing.T) {
	a, b := resolvertest.Start(t, zone), resolvertest.Start(t, zone)
	a.SetFault("order.test", dns.TypeMX, resolvertest.ServFail)
	b.SetFault("order.test", dns.TypeMX, resolvertest.Refused)
	r := newResolver(t, resolver.Options{Attempts: 3}, a, b)
	_, err := r.Route(t.Context(), "order.test")
	checkErr(t, err, resolver.ErrTemporary)
	if na, nb := a.Queries("order.test", dns.TypeMX), b.Queries("order.test", dns.TypeMX); na != 3 || nb != 3 {
		t.Errorf("servers saw %d and %d queries, want 3 each", na, nb)
	}
	// Failures are not cached.
	a.SetFault("order.test", dns.TypeMX, resolvertest.NoFault)
	if _, err := r.Route(t.Context(), "order.test"); err != nil {
		t.Errorf("Route after recovery: %v", err)
	}
}

func TestTimeout(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetFault("order.test", dns.TypeMX, resolvertest.Drop)
	r := newResolver(t, resolver.Options{Timeout: 100 * time.Millisecond, Attempts: 2}, s)
	start := time.Now()
	_, err := r.Route(t.Context(), "order.test")
	elapsed := time.Since(start)
	checkErr(t, err, resolver.ErrTemporary)
	if elapsed < 200*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("Route took %v, want about 2 × 100ms", elapsed)
	}
	if n := s.Queries("order.test", dns.TypeMX); n != 2 {
		t.Errorf("server saw %d queries, want 2", n)
	}
}

func TestTruncationRetriesOverTCP(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetFault("dual.test", dns.TypeA, resolvertest.Truncate)
	r := newResolver(t, resolver.Options{}, s)
	got, err := r.LookupIP(t.Context(), "dual.test")
	if err != nil {
		t.Fatalf("LookupIP: %v", err)
	}
	if want := addrs("192.0.2.10", "192.0.2.11", "2001:db8::10"); !slices.Equal(got, want) {
		t.Errorf("LookupIP = %v, want %v", got, want)
	}
	if n, tcp := s.Queries("dual.test", dns.TypeA), s.TCPQueries("dual.test", dns.TypeA); n != 2 || tcp != 1 {
		t.Errorf("server saw %d A queries, %d over TCP; want 2, 1", n, tcp)
	}
	if tcp := s.TCPQueries("dual.test", dns.TypeAAAA); tcp != 0 {
		t.Errorf("server saw %d AAAA queries over TCP, want 0", tcp)
	}
}

func TestCache(t *testing.T) {
	const ttlZone = `
test.          3600 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
short.test.      60 IN A 192.0.2.1
mixed.test.      30 IN A 192.0.2.1
mixed.test.      90 IN A 192.0.2.2
long.test.    86400 IN A 192.0.2.3
zero.test.        0 IN A 192.0.2.4
alias.test.      20 IN CNAME short.test.
nodata.test.    300 IN TXT "x"
lowsoa.test.     10 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 600
`
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		lookup func(*resolver.Resolver, context.Context, string) error
		ttl    time.Duration // first moment the answer is asked for again; 0: never cached
		zone   string        // default ttlZone
	}{
		{"positive TTL", "short.test", dns.TypeA, lookupIP, 60 * time.Second, ""},
		{"minimum TTL of the RRset", "mixed.test", dns.TypeA, lookupIP, 30 * time.Second, ""},
		{"minimum TTL along a CNAME chain", "alias.test", dns.TypeA, lookupIP, 20 * time.Second, ""},
		{"capped at an hour", "long.test", dns.TypeA, lookupIP, time.Hour, ""},
		{"TTL 0 is not cached", "zero.test", dns.TypeA, lookupIP, 0, ""},
		{"NXDOMAIN per SOA minimum", "nx.test", dns.TypeA, lookupIP, 60 * time.Second, ""},
		{"NODATA per SOA minimum", "nodata.test", dns.TypeMX, mx, 60 * time.Second, ""},
		{"SOA TTL below its minimum", "nx.lowsoa.test", dns.TypeA, lookupIP, 10 * time.Second, ""},
		{"NXDOMAIN without SOA: 5 minutes", "nx.test", dns.TypeA, lookupIP, 5 * time.Minute, "short.test. 60 IN A 192.0.2.1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := tt.zone
			if z == "" {
				z = ttlZone
			}
			s := resolvertest.Start(t, z)
			clk := newClock()
			r := newResolver(t, resolver.Options{Now: clk.Now}, s)
			ask := func() {
				t.Helper()
				_ = tt.lookup(r, t.Context(), tt.qname) // errors are part of some cases; counts are what matter
			}
			ask()
			if n := s.Queries(tt.qname, tt.qtype); n != 1 {
				t.Fatalf("after the first look-up the server saw %d queries, want 1", n)
			}
			ask()
			want := 1
			if tt.ttl == 0 {
				want = 2
			}
			if n := s.Queries(tt.qname, tt.qtype); n != want {
				t.Fatalf("after an immediate second look-up the server saw %d queries, want %d", n, want)
			}
			if tt.ttl == 0 {
				return
			}
			clk.Advance(tt.ttl - time.Second)
			ask()
			if n := s.Queries(tt.qname, tt.qtype); n != 1 {
				t.Errorf("1s before expiry the server saw %d queries, want 1", n)
			}
			clk.Advance(time.Second)
			ask()
			if n := s.Queries(tt.qname, tt.qtype); n != 2 {
				t.Errorf("at expiry the server saw %d queries, want 2", n)
			}
		})
	}
}

func lookupIP(r *resolver.Resolver, ctx context.Context, name string) error {
	_, err := r.LookupIP(ctx, name)
	return err
}

func mx(r *resolver.Resolver, ctx context.Context, name string) error {
	_, err := r.MX(ctx, name)
	return err
}

func TestCacheSize(t *testing.T) {
	s := resolvertest.Start(t, zone)
	t.Run("disabled", func(t *testing.T) {
		r := newResolver(t, resolver.Options{CacheSize: -1}, s)
		for range 3 {
			if _, err := r.TXT(t.Context(), "txt.test"); err != nil {
				t.Fatalf("TXT: %v", err)
			}
		}
		if n := s.Queries("txt.test", dns.TypeTXT); n != 3 {
			t.Errorf("server saw %d queries, want 3", n)
		}
	})
	t.Run("least recently used is evicted", func(t *testing.T) {
		r := newResolver(t, resolver.Options{CacheSize: 2}, s)
		before := func(name string) int { return s.Queries(name, dns.TypeMX) }
		o, e, n := before("order.test"), before("equal.test"), before("null.test")
		for _, d := range []string{"order.test", "equal.test", "order.test", "null.test", "order.test", "equal.test"} {
			if _, err := r.MX(t.Context(), d); err != nil {
				t.Fatalf("MX(%s): %v", d, err)
			}
		}
		// order, equal cached; order used; null evicts equal; order hit; equal evicts null.
		got := []int{before("order.test") - o, before("equal.test") - e, before("null.test") - n}
		if want := []int{1, 2, 1}; !slices.Equal(got, want) {
			t.Errorf("queries for order, equal, null = %v, want %v", got, want)
		}
	})
}

func TestConcurrentMissesShareOneQuery(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetDelay("dual.test", dns.TypeNone, 200*time.Millisecond)
	r := newResolver(t, resolver.Options{}, s)

	const n = 10
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := r.LookupIP(t.Context(), "dual.test")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("LookupIP: %v", err)
		}
	}
	if a, aaaa := s.Queries("dual.test", dns.TypeA), s.Queries("dual.test", dns.TypeAAAA); a != 1 || aaaa != 1 {
		t.Errorf("server saw %d A and %d AAAA queries, want 1 each", a, aaaa)
	}
}

func TestSharedQuerySurvivesLeaderCancel(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetDelay("order.test", dns.TypeMX, 300*time.Millisecond)
	r := newResolver(t, resolver.Options{}, s)

	leaderCtx, cancel := context.WithCancel(t.Context())
	leader := make(chan error, 1)
	go func() {
		_, err := r.Route(leaderCtx, "order.test")
		leader <- err
	}()
	waitFor(t, func() bool { return s.Queries("order.test", dns.TypeMX) == 1 })

	follower := make(chan error, 1)
	go func() {
		_, err := r.Route(t.Context(), "order.test")
		follower <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the follower join the flight
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: got %v, want context.Canceled", err)
	}
	if err := <-follower; err != nil {
		t.Errorf("follower: got %v, want an answer", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestContextEndsLookupPromptly(t *testing.T) {
	s := resolvertest.Start(t, zone)
	s.SetFault("order.test", dns.TypeNone, resolvertest.Drop)
	r := newResolver(t, resolver.Options{Timeout: 10 * time.Second}, s)

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := r.Route(ctx, "order.test")
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("Route returned after %v, want soon after the cancel at 50ms", elapsed)
		}
		checkErr(t, err, context.Canceled)
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := r.LookupIP(ctx, "order.test")
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("LookupIP returned after %v, want soon after the 50ms deadline", elapsed)
		}
		checkErr(t, err, context.DeadlineExceeded)
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		before := s.TotalQueries()
		_, err := r.TXT(ctx, "txt.test")
		checkErr(t, err, context.Canceled)
		if n := s.TotalQueries() - before; n != 0 {
			t.Errorf("server saw %d queries, want 0", n)
		}
	})
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opt     resolver.Options
		want    []string
		wantErr bool
	}{
		{"host:port", resolver.Options{Servers: []string{"127.0.0.1:5353", "[::1]:53"}}, []string{"127.0.0.1:5353", "[::1]:53"}, false},
		{"bare address gets port 53", resolver.Options{Servers: []string{"192.0.2.1", "2001:db8::1"}}, []string{"192.0.2.1:53", "[2001:db8::1]:53"}, false},
		{"resolv.conf", resolver.Options{ResolvConf: conf}, []string{"192.0.2.53:53", "[2001:db8::53]:53"}, false},
		{"missing resolv.conf", resolver.Options{ResolvConf: filepath.Join(dir, "none")}, []string{"127.0.0.1:53"}, false},
		{"bad server", resolver.Options{Servers: []string{"dns.example"}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := resolver.New(tt.opt)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New: got servers %v, want an error", r.Servers())
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if diff := cmp.Diff(tt.want, r.Servers()); diff != "" {
				t.Errorf("Servers mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	s := resolvertest.Start(t, zone)
	r := newResolver(t, resolver.Options{}, s)
	_, err := r.Route(t.Context(), "nx.test")
	if got, want := err.Error(), "resolver: MX nx.test: no such domain"; got != want {
		t.Errorf("error text = %q, want %q", got, want)
	}
	var re *resolver.Error
	if !errors.As(err, &re) || re.Name != "nx.test" || re.Type != "MX" {
		t.Errorf("errors.As(*resolver.Error) = %+v, want Name nx.test, Type MX", re)
	}
}

func BenchmarkRouteCached(b *testing.B) {
	s := resolvertest.Start(b, zone)
	r := newResolver(b, resolver.Options{}, s)
	ctx := b.Context()
	if _, err := r.Route(ctx, "equal.test"); err != nil {
		b.Fatalf("Route: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Route(ctx, "equal.test"); err != nil {
			b.Fatalf("Route: %v", err)
		}
	}
}
