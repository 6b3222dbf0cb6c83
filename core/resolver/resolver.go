// Package resolver is the gateway's DNS client. It answers the questions that
// mail delivery, sender verification and scripts ask: where mail for a domain
// goes (MX with the RFC 5321 §5.1 rules, RFC 7505 null MX, implicit MX),
// the addresses of a host (A and AAAA), TXT records, PTR names, and TLSA
// records with the DNSSEC status of their answer (RFC 7672 §2.1.3: the AD bit
// of a validating recursive server, which the Resolver trusts).
//
// It talks to recursive servers with github.com/miekg/dns over UDP with
// EDNS0, retrying over TCP when an answer is truncated, rotating across the
// configured servers on failure. Answers are kept in a bounded cache for their
// TTL (negative answers per RFC 2308) together with their AD bit, and
// concurrent identical look-ups share one query.
//
// Errors are permanent (ErrNotFound, ErrNoAddress, ErrNullMX, ErrInvalidName)
// or temporary; IsTemporary tells them apart, and every error that is not a
// permanent sentinel counts as temporary, so an unexpected failure defers mail
// rather than bouncing it. The package resolvertest runs a DNS server on
// loopback for tests.
package resolver

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
	"golang.org/x/sync/singleflight"
)

// Defaults for Options.
const (
	DefaultTimeout   = 2 * time.Second
	DefaultAttempts  = 2
	DefaultCacheSize = 10000

	// ednsSize is the EDNS0 UDP payload size we advertise (DNS flag day 2020).
	ednsSize = 1232
	// maxCNAME bounds the length of a CNAME chain that is followed.
	maxCNAME = 8
	// maxTTL caps how long any answer is cached.
	maxTTL = time.Hour
	// defaultNegativeTTL applies to NXDOMAIN/NODATA answers without an SOA.
	defaultNegativeTTL = 5 * time.Minute
	// defaultResolvConf is read when Options.Servers is empty.
	defaultResolvConf = "/etc/resolv.conf"
	// fallbackServer is used when resolv.conf is missing or lists no server.
	fallbackServer = "127.0.0.1:53"
)

// Options configure a Resolver. The zero value is usable.
type Options struct {
	// Servers are the recursive servers to ask, as "host:port" (a bare IP
	// address gets port 53). Empty means the nameservers of ResolvConf,
	// falling back to 127.0.0.1:53.
	Servers []string
	// ResolvConf is the file read when Servers is empty. Default /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds each query attempt (one server, one transport). Default 2s.
	Timeout time.Duration
	// Attempts is the number of tries per server. Default 2. The servers are
	// tried in turn: s1, s2, s1, s2.
	Attempts int
	// CacheSize is the number of cached answers. 0 uses the default (10000);
	// a negative value disables the cache.
	CacheSize int
	// Now returns the current time, for cache expiry. Default time.Now.
	Now func() time.Time
	// Rand shuffles MX hosts of equal preference. Default: a generator seeded
	// from crypto/rand. The Resolver serialises its use.
	Rand *rand.Rand
	// Log receives debug records about failed attempts. Default: discarded.
	Log *slog.Logger
}

// Resolver answers DNS questions for the gateway. It is safe for concurrent
// use and holds no goroutines of its own, so it needs no Close.
type Resolver struct {
	servers  []string
	attempts int
	timeout  time.Duration
	udp      *dns.Client
	tcp      *dns.Client
	idna     *idna.Profile
	cache    *cache // nil when disabled
	flight   singleflight.Group
	now      func() time.Time
	log      *slog.Logger

	randMu sync.Mutex
	rand   *rand.Rand
}

// MX is one mail exchanger for a domain.
type MX struct {
	// Host is the exchanger's name in lower case without the trailing dot,
	// or "." for the root (a null MX, as returned by Resolver.MX).
	Host       string
	Preference uint16
}

// Permanent errors. Errors returned by the Resolver wrap them (errors.Is).
var (
	// ErrNotFound: the name does not exist (NXDOMAIN).
	ErrNotFound = errors.New("resolver: no such domain")
	// ErrNoAddress: the domain exists but has neither MX nor A/AAAA records,
	// or a host has no A/AAAA records.
	ErrNoAddress = errors.New("resolver: no address")
	// ErrNullMX: the domain publishes a null MX (RFC 7505) and accepts no mail.
	ErrNullMX = errors.New("resolver: domain accepts no mail (null MX)")
	// ErrInvalidName: the name or address cannot be looked up.
	ErrInvalidName = errors.New("resolver: invalid name")
)

// ErrTemporary is wrapped by errors for DNS failures worth retrying: SERVFAIL
// or REFUSED from every server, timeouts, network errors, CNAME loops.
var ErrTemporary = errors.New("resolver: temporary failure")

// IsTemporary reports whether err is a failure to retry later rather than a
// permanent answer. Every non-nil error that does not wrap ErrNotFound,
// ErrNoAddress, ErrNullMX or ErrInvalidName is temporary, including context
// cancellation and errors this package does not know.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	return !errors.Is(err, ErrNotFound) &&
		!errors.Is(err, ErrNoAddress) &&
		!errors.Is(err, ErrNullMX) &&
		!errors.Is(err, ErrInvalidName)
}

// Error is the error returned for a failed look-up. Err is one of the
// sentinels above, a wrapped ErrTemporary, or a context error.
type Error struct {
	Name string // the name asked for
	Type string // "MX", "A", "AAAA", "TXT", "PTR", "TLSA"
	Err  error
}

func (e *Error) Error() string {
	return "resolver: " + e.Type + " " + e.Name + ": " + strings.TrimPrefix(e.Err.Error(), "resolver: ")
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a Resolver. It reads ResolvConf when no servers are given but
// sends no query.
func New(opt Options) (*Resolver, error) {
	r := &Resolver{
		attempts: opt.Attempts,
		timeout:  opt.Timeout,
		now:      opt.Now,
		log:      opt.Log,
		rand:     opt.Rand,
		idna:     idna.New(idna.MapForLookup(), idna.Transitional(false), idna.StrictDomainName(false), idna.BidiRule()),
	}
	if r.attempts <= 0 {
		r.attempts = DefaultAttempts
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.rand == nil {
		var seed [32]byte
		if _, err := crand.Read(seed[:]); err != nil {
			return nil, fmt.Errorf("resolver: seeding random source: %w", err)
		}
		r.rand = rand.New(rand.NewChaCha8(seed))
	}
	switch {
	case opt.CacheSize == 0:
		r.cache = newCache(DefaultCacheSize)
	case opt.CacheSize > 0:
		r.cache = newCache(opt.CacheSize)
	}

	servers := opt.Servers
	if len(servers) == 0 {
		servers = systemServers(opt.ResolvConf)
	}
	for _, s := range servers {
		addr, err := serverAddr(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, addr)
	}
	r.udp = &dns.Client{Net: "udp", Timeout: r.timeout, UDPSize: ednsSize}
	r.tcp = &dns.Client{Net: "tcp", Timeout: r.timeout}
	return r, nil
}

// Servers returns the servers the Resolver asks, in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// systemServers reads the nameservers of a resolv.conf file.
func systemServers(path string) []string {
	if path == "" {
		path = defaultResolvConf
	}
	cfg, err := dns.ClientConfigFromFile(path)
	if err != nil || len(cfg.Servers) == 0 {
		return []string{fallbackServer}
	}
	out := make([]string, 0, len(cfg.Servers))
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, cfg.Port))
	}
	return out
}

// serverAddr normalises "host:port" or a bare IP address.
func serverAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || port == "" {
		return "", fmt.Errorf("resolver: server %q: want host:port", s)
	}
	return s, nil
}

// MX returns the MX records of domain sorted by preference, hosts of equal
// preference in random order. A domain without MX records gives an empty
// slice and no error; a null MX is returned as is (Host "."). NXDOMAIN gives
// ErrNotFound. Use Route to decide where mail goes.
func (r *Resolver) MX(ctx context.Context, domain string) ([]MX, error) {
	name, err := r.fqdn(domain)
	if err != nil {
		return nil, &Error{Name: domain, Type: "MX", Err: err}
	}
	res, err := r.resolve(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if res.nxdomain {
		return nil, &Error{Name: domain, Type: "MX", Err: ErrNotFound}
	}
	return r.sortMX(res.rrs), nil
}

// LookupIP returns the IPv4 and IPv6 addresses of host (A and AAAA, asked
// concurrently), following CNAMEs. IPv4 addresses come first, each family in
// the order the server gave. A name without addresses gives ErrNoAddress,
// NXDOMAIN gives ErrNotFound. If one family fails temporarily and the other
// has addresses, those addresses are returned.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, _, err := r.LookupIPSecure(ctx, host)
	return addrs, err
}

// LookupIPSecure is LookupIP that also says whether the addresses are
// secure: every family's answer that was used (both, unless one failed)
// had the AD bit. DANE looks up an MX host's TLSA records only when its
// addresses are secure (RFC 7672 §2.2): a host in an unsigned zone has
// no TLSA records to find, and asking for them only risks the delays of
// servers that fail such queries.
func (r *Resolver) LookupIPSecure(ctx context.Context, host string) (addrs []netip.Addr, secure bool, err error) {
	name, err := r.fqdn(host)
	if err != nil {
		return nil, false, &Error{Name: host, Type: "A", Err: err}
	}
	return r.lookupIP(ctx, host, name)
}

func (r *Resolver) lookupIP(ctx context.Context, host, name string) ([]netip.Addr, bool, error) {
	type outcome struct {
		res result
		err error
	}
	var v6 outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				v6.err = &Error{Name: host, Type: "AAAA", Err: fmt.Errorf("%w: panic: %v", ErrTemporary, p)}
			}
		}()
		v6.res, v6.err = r.resolve(ctx, name, dns.TypeAAAA)
	}()
	var v4 outcome
	v4.res, v4.err = r.resolve(ctx, name, dns.TypeA)
	<-done

	var addrs []netip.Addr
	secure := true
	for _, o := range []outcome{v4, v6} {
		if o.err == nil {
			secure = secure && o.res.secure
		}
		for _, rr := range o.res.rrs {
			var ip net.IP
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A.To4()
			case *dns.AAAA:
				ip = rr.AAAA
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a)
			}
		}
	}
	switch {
	case len(addrs) > 0:
		if err := cmpErr(v4.err, v6.err); err != nil {
			r.log.DebugContext(ctx, "resolver: partial address look-up", "host", host, "err", err)
		}
		return addrs, secure, nil
	case v4.err != nil || v6.err != nil:
		return nil, false, cmpErr(v4.err, v6.err)
	case v4.res.nxdomain && v6.res.nxdomain:
		return nil, false, &Error{Name: host, Type: "A", Err: ErrNotFound}
	default:
		return nil, false, &Error{Name: host, Type: "A", Err: ErrNoAddress}
	}
}

// cmpErr returns the first non-nil error.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TXT returns the TXT records of name, one string per record with the
// record's character-strings concatenated (as SPF and DKIM want). A name
// without TXT records gives an empty slice and no error; NXDOMAIN gives
// ErrNotFound.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	q, err := r.fqdn(name)
	if err != nil {
		return nil, &Error{Name: name, Type: "TXT", Err: err}
	}
	res, err := r.resolve(ctx, q, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if res.nxdomain {
		return nil, &Error{Name: name, Type: "TXT", Err: ErrNotFound}
	}
	var out []string
	for _, rr := range res.rrs {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// PTR returns the names that ip maps back to, in lower case without the
// trailing dot. An address without PTR records gives an empty slice and no
// error; NXDOMAIN gives ErrNotFound.
func (r *Resolver) PTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	if !ip.IsValid() {
		return nil, &Error{Name: ip.String(), Type: "PTR", Err: ErrInvalidName}
	}
	ip = ip.Unmap().WithZone("")
	q, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return nil, &Error{Name: ip.String(), Type: "PTR", Err: fmt.Errorf("%w: %v", ErrInvalidName, err)}
	}
	res, err := r.resolve(ctx, q, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	if res.nxdomain {
		return nil, &Error{Name: ip.String(), Type: "PTR", Err: ErrNotFound}
	}
	var out []string
	for _, rr := range res.rrs {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, hostName(p.Ptr))
		}
	}
	return out, nil
}

// Route returns where mail for domain goes (RFC 5321 §5.1): its MX hosts in
// preference order, random within equal preference. A domain without MX
// records but with an address is its own exchanger (implicit MX, preference
// 0; for an alias, the canonical name). Errors:
//   - null MX (RFC 7505: the only MX is ".") → ErrNullMX;
//   - NXDOMAIN → ErrNotFound;
//   - neither MX nor A/AAAA → ErrNoAddress;
//   - SERVFAIL, timeouts, network errors → IsTemporary(err) is true.
//
// MX records whose host is "." next to real ones are ignored. Route does not
// resolve the MX hosts; use LookupIP for each.
func (r *Resolver) Route(ctx context.Context, domain string) ([]MX, error) {
	mxs, _, err := r.RouteSecure(ctx, domain)
	return mxs, err
}

// RouteSecure is Route that also says whether the answer was validated
// with DNSSEC (the AD bit, see TLSA): the MX answer, and for an implicit
// MX the address answer too. A REQUIRETLS message needs a validated MX
// list or an MTA-STS policy (RFC 8689 §4.2.1).
func (r *Resolver) RouteSecure(ctx context.Context, domain string) ([]MX, bool, error) {
	name, err := r.fqdn(domain)
	if err != nil {
		return nil, false, &Error{Name: domain, Type: "MX", Err: err}
	}
	res, err := r.resolve(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, false, err
	}
	if res.nxdomain {
		return nil, false, &Error{Name: domain, Type: "MX", Err: ErrNotFound}
	}
	if len(res.rrs) > 0 {
		mxs := r.sortMX(res.rrs)
		hosts := slices.DeleteFunc(mxs, func(m MX) bool { return m.Host == "." })
		if len(hosts) == 0 {
			return nil, false, &Error{Name: domain, Type: "MX", Err: ErrNullMX}
		}
		return hosts, res.secure, nil
	}
	// No MX: the domain itself, if it has an address (implicit MX).
	_, secure, err := r.lookupIP(ctx, domain, res.name)
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoAddress) {
			return nil, false, &Error{Name: domain, Type: "MX", Err: ErrNoAddress}
		}
		return nil, false, err
	}
	return []MX{{Host: hostName(res.name), Preference: 0}}, res.secure && secure, nil
}

// DomainExists answers sender-domain verification, like Postfix's
// reject_unknown_sender_domain: true if the domain has a usable MX or an
// A/AAAA record; false, with no error, for NXDOMAIN, a null MX or neither;
// false and a temporary error when DNS fails; false and ErrInvalidName for a
// name that is not a domain name.
func (r *Resolver) DomainExists(ctx context.Context, domain string) (bool, error) {
	_, err := r.Route(ctx, domain)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrInvalidName):
		return false, err
	case !IsTemporary(err):
		return false, nil
	default:
		return false, err
	}
}

// sortMX converts MX records, sorts them by preference and shuffles hosts of
// equal preference. rrs is shared with the cache and is not modified.
func (r *Resolver) sortMX(rrs []dns.RR) []MX {
	out := make([]MX, 0, len(rrs))
	for _, rr := range rrs {
		if m, ok := rr.(*dns.MX); ok {
			out = append(out, MX{Host: hostName(m.Mx), Preference: m.Preference})
		}
	}
	r.randMu.Lock()
	r.rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	r.randMu.Unlock()
	slices.SortStableFunc(out, func(a, b MX) int { return int(a.Preference) - int(b.Preference) })
	return out
}

// hostName turns a DNS name into the form we hand out: lower case, no
// trailing dot, "." for the root.
func hostName(s string) string {
	s = strings.ToLower(s)
	if len(s) > 1 {
		s = strings.TrimSuffix(s, ".")
	}
	return s
}

// fqdn validates name, converts U-labels to A-labels (IDNA 2008, UTS #46
// lookup mapping, underscores allowed) and returns it lower-cased and fully
// qualified.
func (r *Resolver) fqdn(name string) (string, error) {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return "", ErrInvalidName
	}
	ascii := true
	for i := 0; i < len(n); i++ {
		if n[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		n = strings.ToLower(n)
	} else {
		a, err := r.idna.ToASCII(n)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalidName, err)
		}
		n = a
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c <= ' ' || c >= 0x7f || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == '@' || c == '$' {
			return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
		}
	}
	if _, ok := dns.IsDomainName(n); !ok || strings.Contains(n, "..") {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return dns.Fqdn(n), nil
}
