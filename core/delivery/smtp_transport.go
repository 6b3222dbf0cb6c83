package delivery

// This file is the SMTP transport: MX look-up (or a static route), fail-over
// across exchangers and their addresses, STARTTLS by policy (resuming
// earlier TLS sessions, smtp_sessions.go), one pipelined transaction per
// job, and a pool of idle connections reused by later jobs to the same
// destination.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
)

// Defaults for SMTPOptions; Port, ConnectTimeout, CommandTimeout and
// DeadAddressTTL default to config.DefaultDelivery's.
const (
	DefaultMaxIdle    = 5 * time.Second
	DefaultMaxPerConn = 100
)

// quitTimeout bounds the QUIT sent when a connection is retired.
const quitTimeout = 5 * time.Second

// STARTTLS policies of Route.TLS, named as Postfix's levels are.
const (
	TLSNone          = "none"
	TLSOpportunistic = "opportunistic" // STARTTLS when offered, any certificate; also what "" means
	TLSEncrypt       = "encrypt"       // TLS mandatory, any certificate (Postfix's encrypt)
	TLSVerify        = "verify"        // TLS mandatory, chain and name verified (Postfix's secure)
	TLSRequire       = "require"       // the same as verify (its older name)
)

// tlsMandatory reports whether policy refuses to go on without TLS.
func tlsMandatory(policy string) bool {
	return policy == TLSEncrypt || tlsVerified(policy)
}

// tlsVerified reports whether policy verifies the certificate.
func tlsVerified(policy string) bool {
	return policy == TLSVerify || policy == TLSRequire || policy == TLSDANE || policy == TLSMTASTS
}

// SMTPOptions configure an SMTP transport.
type SMTPOptions struct {
	// Hostname is the EHLO name. Required in production; "" = "localhost".
	Hostname string
	// Resolver answers the MX and address look-ups. Required unless every
	// route is a static one to an IP address or a domain literal.
	Resolver *resolver.Resolver
	// Port is the port exchangers are dialled at; 0 = 25. (A static route
	// names its own port.)
	Port int
	// ConnectTimeout bounds one TCP connect; 0 = 30s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command's reply and each read or write of
	// the message; 0 = 5m.
	CommandTimeout time.Duration
	// TLSConfig returns the client TLS config for STARTTLS to host (the MX
	// or route host name, or the IP for a literal). nil = a default config
	// with ServerName host, which verifies the certificate under "require"
	// and does not under "opportunistic" (RFC 7435: unauthenticated
	// encryption beats clear text). A config it returns is used as it
	// comes: its connections resume TLS sessions only if it sets its own
	// ClientSessionCache (see TLSSessions).
	TLSConfig func(host string) *tls.Config
	// TLSSessions is how many TLS sessions are kept per TLS level, for
	// new connections to a next hop to resume (one per host name and
	// address; the least recently used goes first; none under DANE or an
	// MTA-STS policy in testing mode); 0 = DefaultTLSSessions, a negative
	// value = none (a full handshake every time).
	TLSSessions int
	// MaxIdle is how long an idle connection is kept for reuse; 0 = 5s, a
	// negative value = no reuse (QUIT after every job).
	MaxIdle time.Duration
	// MaxPerConn is the number of messages sent on one connection before
	// it is retired with QUIT; 0 = 100.
	MaxPerConn int
	// Self lists where this gateway receives mail, asked at each MX
	// delivery (listeners are bound after the transport is made): its
	// listeners' bound addresses and the addresses a NAT or load balancer
	// forwards to it (port 0 = any port); nil = none. An exchanger that is this gateway (by these, or
	// named Hostname) is dropped with every less or equally preferred one
	// (RFC 5321 §5.1); an unspecified address (0.0.0.0, ::) stands for the
	// machine's loopback and interface addresses. Otherwise addresses are
	// compared exactly: 127.0.0.2 is not 127.0.0.1.
	Self func() []netip.AddrPort
	// AlwaysBDAT sends every message with BDAT (RFC 3030) to a next hop
	// that offers CHUNKING (delivery { chunking = "always" }). Without it
	// only BODY=BINARYMIME messages go with BDAT, as they must.
	AlwaysBDAT bool
	// MTASTS gives recipient domains' MTA-STS policies (RFC 8461),
	// honoured for MX deliveries (not a route's via); nil = none.
	MTASTS STSPolicies
	// DANE looks up each exchanger's TLSA records (RFC 7672) with
	// Resolver and honours those it vouches for with the AD bit.
	DANE bool
	// RootCAs verifies certificates under "verify" and MTA-STS; nil = the
	// system roots.
	RootCAs *x509.CertPool
	// Reports receives the TLS outcome of each session for TLS-RPT; nil =
	// none.
	Reports TLSReporter
	// DeadAddressTTL is how long an address whose connect failed is not
	// dialled again (jobs fail over past it, or defer) unless ForgetDead
	// clears it; 0 = config's default (30s), <0 = off.
	DeadAddressTTL time.Duration
	// Log receives one record per attempt and per connection problem; nil
	// = discard.
	Log *slog.Logger
}

// SMTP delivers over SMTP to the exchangers of the destination domain or to
// a static route's next hop. It is safe for concurrent use. It implements
// Transport; it keeps idle connections for reuse and owns a
// goroutine that retires them after MaxIdle, both ended by Close, which
// its creator calls.
//
// Next hops: Route.Via "host:port" (host a name, looked up with LookupIP,
// or an IP address) if set; else a domain literal ([192.0.2.1] or
// [IPv6:…]) in Job.Domain; else the MX hosts of Job.Domain in preference
// order (implicit MX included), each host's addresses in the order
// LookupIP gives. Every address is tried until one takes the transaction:
// a refused or timed-out connect, a greeting or EHLO that is not 2xx,
// STARTTLS that "require" cannot have, or a connection that dies before
// MAIL is answered, moves on to the next address. When all fail, every
// recipient gets a Temporary result built from the last failure.
//
// Look-up failures: a null MX is Permanent 556 5.1.10, NXDOMAIN (or a name
// that cannot be looked up) Permanent 550 5.1.2, a domain without MX and
// address, or whose exchangers all have none, Permanent 550 5.4.4; a DNS
// failure is Temporary 451 4.4.3. An MX list in which this gateway (see
// SMTPOptions.Self) is the most preferred host is Temporary 451 4.4.6: the
// domain needs a route. A static route whose host cannot be
// resolved is Temporary 451 4.4.3 whatever the cause: it is a
// configuration matter, and mail waits for it to be fixed.
//
// STARTTLS, per Route.TLS: "none" never; "opportunistic" (or "") when
// offered, continuing in clear text if the server refuses the command and
// reconnecting without TLS to the same address if the handshake fails;
// "encrypt", "verify" and "require" only over TLS, trying the next address
// when STARTTLS is not offered or fails, and Temporary 451 4.7.5 at the
// end. For an MX delivery (not a route's via, not an address literal) the
// recipient domain's policies raise the level (smtp_policy.go): DANE
// ("dane") when the resolver vouches for an exchanger's TLSA records, else
// MTA-STS in enforce mode ("mta-sts", and only the exchangers it lists);
// a REQUIRETLS message needs one of those or "verify" (else Permanent
// 550 5.7.30). Result.TLSPolicy names the level used.
//
// Outcomes of a transaction: a refused MAIL gives its reply to every
// recipient; a refused RCPT gives that recipient its reply; the reply
// after the message (or a refused DATA) goes to every recipient whose RCPT
// was accepted. 2xx is Delivered, 5xx Permanent, anything else Temporary;
// the enhanced code comes from StatusFromReply. A connection lost during
// the transaction is Temporary 451 4.4.2 for every recipient without a
// final reply (the message may arrive twice after the retry:
// at-least-once). Before any command: a message needing SMTPUTF8 that the
// server lacks is Permanent 553 5.6.7, one larger than the server's SIZE
// is Permanent 552 5.3.4, a BODY=BINARYMIME message to a server without
// CHUNKING and BINARYMIME is Permanent 554 5.6.3 decided here (Local, no
// RemoteMTA: nobody refused it, it cannot be sent), and a failure to read
// the message from the spool is Temporary 451 4.3.0.
//
// The message goes with BDAT when it is BINARYMIME, or when AlwaysBDAT is
// set and the server offers CHUNKING (see smtp.Client.Send); a refused
// chunk counts as a refused DATA.
//
// Result.Text is the remote reply on one line ("550 5.1.1 No such user")
// when one decided, else a description of what failed (and Local is set).
// RemoteMTA is the host that answered: the MX or route host name, or
// "[ip]" for an IP.
// A Delivered result's Handoff is HandoffDSN when the server offers DSN,
// else HandoffRelayed (RFC 3461 §6.2.3).
//
// Connection reuse: after a transaction that leaves the session usable,
// the connection goes to an idle pool keyed by host, address and TLS
// policy, at most MaxPerConn messages per connection. A later job takes
// a pooled connection to a host before dialling that host, but only when
// it comes to that host in preference order: an idle connection to MX 20
// is not used while MX 10 takes the mail. If a pooled connection turns out
// dead before MAIL is answered, it is dropped and the job dials afresh.
//
// TLS sessions: a new connection's STARTTLS resumes the session of an
// earlier one to the same host name and address made under the same TLS
// level (not under DANE or an MTA-STS policy in testing mode; see
// tlsSessions and SMTPOptions.TLSSessions), skipping the certificate
// exchange and, under TLS 1.2, the key exchange; a verifying level checks
// the session's certificate again.
type SMTP struct {
	opt SMTPOptions
	log *slog.Logger

	mu     sync.Mutex
	idle   map[connKey][]*smtpConn // most recently used last
	dead   map[string]deadAddr     // addresses whose connect failed lately
	closed bool

	stop chan struct{} // closed by Close: the reaper returns
	done chan struct{} // closed when the reaper has returned; nil without one

	sessions   tlsSessions     // TLS sessions to resume, per level; nil = none
	handshakes smtp.TLSCounter // the STARTTLS handshakes of every connection

	// localAddrs are the machine's interface addresses (what a listener on
	// 0.0.0.0 or [::] receives on), looked up once, when first needed:
	// Postfix too learns its own addresses at start.
	localAddrs func() []netip.Addr
}

// deadAddr remembers a failed connect, so that later jobs within
// DeadAddressTTL fail over (or defer) without dialling it again: Postfix's
// "delivery temporarily suspended". A dead next hop then costs a deferral
// per message, not a connection attempt per message.
type deadAddr struct {
	until   time.Time
	why     string          // the connect error, for the Result's text
	domains map[string]bool // job domains it failed or was skipped for: what ForgetDead clears by
}

// connKey identifies a destination whose connections are interchangeable.
type connKey struct {
	host string      // MX or route host name, or the IP: TLS ServerName and RemoteMTA
	addr string      // ip:port dialled
	tls  string      // policy the connection was set up under
	auth Credentials // who it logged in as; zero: no AUTH
}

// smtpConn is one connection, in use or idle.
type smtpConn struct {
	key    connKey
	c      *smtp.Client
	local  string    // our IP address on it (TLS-RPT's sending-mta-ip)
	sent   int       // messages handed over on it
	idle   time.Time // when it went idle
	reused bool      // taken from the pool for this job
}

// NewSMTP returns an SMTP transport with opt's zero fields set to their
// defaults. When reuse is on it starts the reaper goroutine; call Close to
// stop it.
func NewSMTP(opt SMTPOptions) *SMTP {
	def := config.DefaultDelivery()
	if opt.Port <= 0 {
		opt.Port = def.Port
	}
	if opt.ConnectTimeout <= 0 {
		opt.ConnectTimeout = def.ConnectTimeout
	}
	if opt.CommandTimeout <= 0 {
		opt.CommandTimeout = def.CommandTimeout
	}
	if opt.MaxIdle == 0 {
		opt.MaxIdle = DefaultMaxIdle
	}
	if opt.MaxPerConn <= 0 {
		opt.MaxPerConn = DefaultMaxPerConn
	}
	if opt.DeadAddressTTL == 0 {
		opt.DeadAddressTTL = def.DeadHostTTL
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	s := &SMTP{opt: opt, log: opt.Log, idle: map[connKey][]*smtpConn{}, stop: make(chan struct{}),
		sessions: newTLSSessions(opt.TLSSessions), localAddrs: sync.OnceValue(interfaceAddrs)}
	if opt.MaxIdle > 0 {
		s.done = make(chan struct{})
		go s.reap()
	}
	return s
}

// smtpHop is one address to try.
type smtpHop struct {
	host string // name for TLS and RemoteMTA; the IP for literals
	addr string // ip:port
}

// smtpHost is one exchanger whose addresses are looked up when needed.
type smtpHost struct {
	name string
	pref uint16     // MX preference
	ip   netip.Addr // set for IP literals: no look-up
	port int
}

// Deliver implements Transport.
func (s *SMTP) Deliver(ctx context.Context, job *Job) []Result {
	if len(job.Recipients) == 0 {
		return nil
	}
	want := connKey{tls: job.Route.TLS}
	if a := job.Route.Auth; a != nil {
		want.auth = *a
	}
	switch want.tls {
	case "":
		want.tls = TLSOpportunistic
	case TLSNone, TLSOpportunistic, TLSEncrypt, TLSVerify, TLSRequire:
	default:
		return allResults(job, localResult(Temporary, 451, 4, 3, 5, fmt.Sprintf("unknown TLS policy %q", job.Route.TLS)))
	}
	d, fail := s.nextHosts(ctx, job)
	if fail == nil && d.mx {
		d.sts = s.stsFor(ctx, job)
		fail = s.stsHosts(ctx, job, d)
	}
	if fail != nil {
		s.log.InfoContext(ctx, "smtp: no route", "id", job.ID, "domain", job.Domain, "class", fail.Class.String(), "err", fail.Text)
		return allResults(job, *fail)
	}
	var fails hostFailures
	for _, h := range d.hosts {
		plan, planFail := s.planFor(ctx, job, h, d, want.tls)
		if planFail != nil {
			s.log.InfoContext(ctx, "smtp: exchanger skipped", "id", job.ID, "host", h.name, "tls_policy", plan.level, "err", planFail.Text)
			fails.note(planFail)
			continue
		}
		rs, hostFail, err := s.tryHost(ctx, job, h, want, plan)
		if rs != nil {
			return rs
		}
		fails.note(hostFail)
		if err != nil && (!d.mx || resolver.IsTemporary(err)) {
			fails.dns = err
		}
		if ctx.Err() != nil && fails.last() != nil {
			return allResults(job, *fails.last())
		}
	}
	if r := fails.last(); r != nil {
		return allResults(job, *r)
	}
	if fails.dns != nil {
		return allResults(job, localResult(Temporary, 451, 4, 4, 3, "DNS look-up failed: "+resultText(fails.dns)))
	}
	return allResults(job, localResult(Permanent, 550, 5, 4, 4, "no route: no exchanger of "+job.Domain+" has an address"))
}

// hostFailures are what the exchangers of one job failed with. A host that
// failed for now outweighs one refused for good: the message waits for it
// (a backup MX's refusal of a REQUIRETLS message is about that host, not
// the message).
type hostFailures struct {
	temporary, permanent *Result
	dns                  error // the last look-up failure worth a retry
}

func (f *hostFailures) note(r *Result) {
	switch {
	case r == nil:
	case r.Class == Permanent:
		f.permanent = r
	default:
		f.temporary = r
	}
}

// last is the failure that stands for the job: the last temporary one,
// else the last permanent one, else nil.
func (f *hostFailures) last() *Result {
	if f.temporary != nil {
		return f.temporary
	}
	return f.permanent
}

// tryHost delivers job to one exchanger, secured as plan says: over a
// pooled connection if one is there, else over a new one to each of its
// addresses in turn. It returns the results, or nil and the last failure
// (nil when none was tried) or the error of the address look-up.
func (s *SMTP) tryHost(ctx context.Context, job *Job, h smtpHost, want connKey, plan *tlsPlan) ([]Result, *Result, error) {
	want.tls = plan.level
	// A pooled connection to h goes before a new one; a dead one is
	// dropped. Hosts are taken in preference order, so an idle
	// connection to a less preferred host waits until the more
	// preferred ones have failed (RFC 5321 §5.1).
	for sc := s.takeFor(h, want, requiresTLS(job)); sc != nil; sc = s.takeFor(h, want, requiresTLS(job)) {
		if rs, _ := s.run(ctx, job, sc); rs != nil {
			return rs, nil, nil
		}
	}
	addrs, err := s.addrs(ctx, h)
	if err != nil {
		s.log.InfoContext(ctx, "smtp: exchanger has no address", "id", job.ID, "host", h.name, "err", err)
		return nil, nil, err
	}
	var last *Result
	for _, a := range addrs {
		hp := smtpHop{host: h.name, addr: net.JoinHostPort(a.String(), strconv.Itoa(h.port))}
		rs, hopFail := s.attempt(ctx, job, hp, want, plan)
		if rs != nil {
			return rs, nil, nil
		}
		last = hopFail
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last, nil
}

// nextHosts lists where the job may go: a route's via, an address
// literal, or the domain's exchangers (d.mx) and whether DNSSEC vouched
// for them.
func (s *SMTP) nextHosts(ctx context.Context, job *Job) (*destination, *Result) {
	if via := job.Route.Via; via != "" {
		host, port, err := splitVia(via, s.opt.Port)
		if err != nil {
			r := localResult(Temporary, 451, 4, 3, 5, err.Error())
			return nil, &r
		}
		h := smtpHost{name: host, port: port}
		if ip, err := netip.ParseAddr(host); err == nil {
			h.ip = ip
		}
		return &destination{hosts: []smtpHost{h}}, nil
	}
	if ip, ok, err := domainLiteral(job.Domain); ok {
		if err != nil {
			r := localResult(Permanent, 550, 5, 1, 2, err.Error())
			return nil, &r
		}
		return &destination{hosts: []smtpHost{{name: ip.String(), ip: ip, port: s.opt.Port}}}, nil
	}
	if s.opt.Resolver == nil {
		r := localResult(Temporary, 451, 4, 3, 5, "no resolver configured for MX look-ups")
		return nil, &r
	}
	mxs, secure, err := s.opt.Resolver.RouteSecure(ctx, job.Domain)
	if err != nil {
		return nil, routeFailure(job.Domain, err)
	}
	d := &destination{mx: true, secure: secure}
	for _, mx := range mxs {
		h := smtpHost{name: mx.Host, pref: mx.Preference, port: s.opt.Port}
		if ip, err := netip.ParseAddr(mx.Host); err == nil {
			h.ip = ip // an MX naming an address: wrong, but unambiguous
		}
		d.hosts = append(d.hosts, h)
	}
	hosts, self := s.dropSelf(ctx, d.hosts)
	if self && len(hosts) == 0 {
		r := localResult(Temporary, 451, 4, 4, 6, "mail for "+job.Domain+" loops back to myself: this gateway is its most preferred MX, so the domain needs a route")
		return nil, &r
	}
	d.hosts = hosts
	return d, nil
}

// routeFailure is the result of a failed MX look-up for domain.
func routeFailure(domain string, err error) *Result {
	var r Result
	switch {
	case errors.Is(err, resolver.ErrNullMX):
		r = localResult(Permanent, 556, 5, 1, 10, "null MX: "+domain+" accepts no mail (RFC 7505)")
	case errors.Is(err, resolver.ErrNotFound), errors.Is(err, resolver.ErrInvalidName):
		r = localResult(Permanent, 550, 5, 1, 2, "domain not found: "+resultText(err))
	case errors.Is(err, resolver.ErrNoAddress):
		r = localResult(Permanent, 550, 5, 4, 4, "no route: "+resultText(err))
	default:
		r = localResult(Temporary, 451, 4, 4, 3, "DNS look-up failed: "+resultText(err))
	}
	return &r
}

// addrs returns the addresses of h.
func (s *SMTP) addrs(ctx context.Context, h smtpHost) ([]netip.Addr, error) {
	if h.ip.IsValid() {
		return []netip.Addr{h.ip}, nil
	}
	if s.opt.Resolver == nil {
		return nil, fmt.Errorf("delivery: no resolver to look up %s", h.name)
	}
	return s.opt.Resolver.LookupIP(ctx, h.name)
}

// splitVia parses a static route's "host:port" (or "[ip]:port", or a host
// without a port, which gets def).
func splitVia(via string, def int) (string, int, error) {
	host, port, err := net.SplitHostPort(via)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return strings.Trim(via, "[]"), def, nil
		}
		return "", 0, fmt.Errorf("delivery: bad route %q: %v", via, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 || host == "" {
		return "", 0, fmt.Errorf("delivery: bad route %q: want host:port", via)
	}
	return host, n, nil
}

// domainLiteral parses "[192.0.2.1]" or "[IPv6:2001:db8::1]". ok reports
// whether domain is a literal at all.
func domainLiteral(domain string) (ip netip.Addr, ok bool, err error) {
	if !strings.HasPrefix(domain, "[") || !strings.HasSuffix(domain, "]") {
		return netip.Addr{}, false, nil
	}
	lit := domain[1 : len(domain)-1]
	v6 := false
	if len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:") {
		lit, v6 = lit[5:], true
	}
	ip, err = netip.ParseAddr(lit)
	if err != nil || ip.Zone() != "" || ip.Is6() != v6 || ip.Is4In6() {
		return netip.Addr{}, true, fmt.Errorf("bad address literal %s", domain)
	}
	return ip, true, nil
}

// isDead reports whether a connect to addr failed within DeadAddressTTL,
// and why.
func (s *SMTP) isDead(addr string) (string, bool) {
	if s.opt.DeadAddressTTL < 0 {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dead[addr]
	if !ok {
		return "", false
	}
	if !time.Now().Before(d.until) {
		delete(s.dead, addr)
		return "", false
	}
	return d.why, true
}

// markDead records a failed connect to addr.
func (s *SMTP) markDead(addr, why string) {
	if s.opt.DeadAddressTTL < 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead == nil {
		s.dead = make(map[string]deadAddr)
	}
	s.dead[addr] = deadAddr{until: time.Now().Add(s.opt.DeadAddressTTL), why: why, domains: map[string]bool{}}
}

// noteDead tags addr's dead entry, if it has one, with the job domain it
// was to carry mail for.
func (s *SMTP) noteDead(addr, domain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.dead[addr]; ok {
		d.domains[domain] = true
	}
}

// ForgetDead implements DeadHostCache: the addresses that failed for
// domain ("" = all) are dialled again by the next job.
func (s *SMTP) ForgetDead(domain string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, d := range s.dead {
		if domain == "" || d.domains[domain] {
			delete(s.dead, addr)
		}
	}
}

// attempt delivers the job over a new connection to one address, set up
// as want says (TLS policy, credentials). It returns the results, or nil
// and the failure that makes the caller try the next address.
func (s *SMTP) attempt(ctx context.Context, job *Job, hp smtpHop, want connKey, plan *tlsPlan) ([]Result, *Result) {
	key := want
	key.host, key.addr = hp.host, hp.addr
	sc, fail := s.connect(ctx, key, plan)
	if fail != nil {
		s.noteDead(hp.addr, job.Domain)
		if fail.TLSPolicy == "" {
			fail.TLSPolicy = key.tls
		}
		return nil, fail
	}
	rs, fail := s.run(ctx, job, sc)
	if rs == nil {
		fail.TLSPolicy = key.tls
		return nil, fail
	}
	return rs, nil
}

// connect dials key.addr and readies a session: greeting, EHLO, STARTTLS
// by policy, and AUTH with the key's credentials.
func (s *SMTP) connect(ctx context.Context, key connKey, plan *tlsPlan) (*smtpConn, *Result) {
	sc, fail := s.open(ctx, key, plan, false)
	if fail != nil {
		return nil, fail
	}
	return s.login(ctx, sc)
}

// open dials key.addr: greeting, EHLO, and STARTTLS as plan says. clear
// skips STARTTLS (the opportunistic fall-back).
func (s *SMTP) open(ctx context.Context, key connKey, plan *tlsPlan, clear bool) (*smtpConn, *Result) {
	remote := remoteName(key.host)
	if why, dead := s.isDead(key.addr); dead {
		r := localResult(Temporary, 451, 4, 4, 1, "connection failed: "+key.host+" ["+key.addr+"]: "+why+
			" (delivery to this address suspended for a while)")
		return nil, &r
	}
	d := net.Dialer{Timeout: s.opt.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", key.addr)
	if err != nil {
		s.log.InfoContext(ctx, "smtp: connect failed", "host", key.host, "addr", key.addr, "err", err)
		if ctx.Err() == nil {
			s.markDead(key.addr, resultText(err))
		}
		r := localResult(Temporary, 451, 4, 4, 1, "connection failed: "+key.host+" ["+key.addr+"]: "+resultText(err))
		return nil, &r
	}
	c, err := smtp.NewClient(ctx, conn, smtp.ClientOptions{
		LocalName:     s.opt.Hostname,
		Timeout:       s.opt.CommandTimeout,
		Log:           s.log,
		AlwaysBDAT:    s.opt.AlwaysBDAT,
		TLSHandshakes: &s.handshakes,
	})
	if err == nil {
		err = c.Hello(ctx)
	}
	if err != nil {
		s.log.InfoContext(ctx, "smtp: session refused", "host", key.host, "addr", key.addr, "err", err)
		if c != nil {
			s.hangUp(ctx, c)
		}
		var reply smtp.Reply
		if errors.As(err, &reply) {
			r := hopReplyResult(reply, remote)
			return nil, &r
		}
		r := localResult(Temporary, 451, 4, 4, 2, "connection to "+key.host+" ["+key.addr+"] failed: "+resultText(err))
		r.RemoteMTA = remote
		return nil, &r
	}
	sc := &smtpConn{key: key, c: c, local: hostOf(conn.LocalAddr().String())}
	if key.tls == TLSNone || clear {
		return sc, nil
	}
	return s.startTLS(ctx, sc, plan)
}

// startTLS secures sc's session as plan says: the mandatory levels fail
// without TLS (or with a certificate their check refuses);
// "opportunistic" goes on in clear text when STARTTLS is not offered or
// is refused with a reply, and reconnects without it when the handshake
// fails. The outcome goes to TLS-RPT when plan has a policy to report.
func (s *SMTP) startTLS(ctx context.Context, sc *smtpConn, plan *tlsPlan) (*smtpConn, *Result) {
	key, c, remote := sc.key, sc.c, remoteName(sc.key.host)
	fail := func(why string) (*smtpConn, *Result) {
		r := localResult(Temporary, 451, 4, 7, 5, tlsDemand(key.tls)+": "+key.host+" ["+key.addr+"]"+why)
		r.RemoteMTA, r.TLSPolicy = remote, key.tls
		return nil, &r
	}
	_, offered := c.Extension("STARTTLS")
	if !offered {
		s.reportTLS(ctx, sc, plan, false, nil)
		if tlsMandatory(key.tls) {
			s.quit(ctx, c)
			return fail(" does not offer STARTTLS")
		}
		return sc, nil
	}
	plan.testErr = nil
	err := c.StartTLS(ctx, s.tlsConfig(key, plan))
	s.reportTLS(ctx, sc, plan, true, err)
	if err == nil {
		return sc, nil
	}
	if tlsMandatory(key.tls) {
		s.log.InfoContext(ctx, "smtp: STARTTLS failed", "host", key.host, "addr", key.addr, "tls_policy", key.tls, "err", err)
		s.hangUp(ctx, c)
		return fail(": " + resultText(err))
	}
	if c.Err() == nil {
		// STARTTLS refused with a reply: the session goes on in clear text.
		s.log.WarnContext(ctx, "smtp: STARTTLS refused, continuing without TLS", "host", key.host, "addr", key.addr, "err", err)
		return sc, nil
	}
	s.log.WarnContext(ctx, "smtp: TLS handshake failed, reconnecting without TLS", "host", key.host, "addr", key.addr, "err", err)
	c.Close()
	if ctx.Err() != nil {
		r := localResult(Temporary, 451, 4, 4, 2, "connection to "+key.host+" ["+key.addr+"] failed: "+resultText(err))
		return nil, &r
	}
	return s.open(ctx, key, plan, true)
}

// tlsDemand says, for a failure's text, who wants TLS at level.
func tlsDemand(level string) string {
	switch level {
	case TLSDANE:
		return "TLS required by DANE (the exchanger's TLSA records) but not available"
	case TLSMTASTS:
		return "TLS required by the domain's MTA-STS policy but not available"
	}
	return "TLS required but not available"
}

// login authenticates sc's session with its key's credentials, if any:
// AUTH PLAIN, else LOGIN. Credentials go only over TLS under the
// "require" policy (the certificate verified), or in clear text under
// "none", which the route must say itself (config sees to both); never
// under "opportunistic", which takes any certificate. Every failure is temporary,
// a refused password too (as Postfix's smtp_sasl_auth_soft_bounce): a
// configuration mistake must not bounce the mail queued behind it.
func (s *SMTP) login(ctx context.Context, sc *smtpConn) (*smtpConn, *Result) {
	key, c := sc.key, sc.c
	if key.auth == (Credentials{}) {
		return sc, nil
	}
	where, remote := key.host+" ["+key.addr+"]", remoteName(key.host)
	fail := func(e2 uint16, text string) (*smtpConn, *Result) {
		s.hangUp(ctx, c)
		r := localResult(Temporary, 451, 4, 7, e2, text)
		r.RemoteMTA = remote
		return nil, &r
	}
	switch {
	case key.tls == TLSOpportunistic || key.tls == TLSEncrypt:
		return fail(10, "not sending credentials to "+where+" without a verified TLS session: the route's tls is "+key.tls)
	case !tlsOn(c) && key.tls != TLSNone:
		return fail(10, "not sending credentials to "+where+" in clear text: its session has no TLS (set tls = \"none\" on the route to allow it)")
	}
	mechs, offered := c.Extension("AUTH")
	if !offered {
		return fail(4, where+" does not offer AUTH")
	}
	var mech sasl.Client
	switch fields := strings.Fields(strings.ToUpper(mechs)); {
	case slices.Contains(fields, "PLAIN"):
		mech = sasl.NewPlainClient("", key.auth.Username, key.auth.Password)
	case slices.Contains(fields, "LOGIN"):
		mech = sasl.NewLoginClient(key.auth.Username, key.auth.Password)
	default:
		return fail(4, where+" offers no AUTH PLAIN or LOGIN, only "+mechs)
	}
	err := c.Auth(ctx, mech)
	if err == nil {
		return sc, nil
	}
	s.log.WarnContext(ctx, "smtp: authentication failed", "host", key.host, "addr", key.addr, "user", key.auth.Username, "err", err)
	var reply smtp.Reply
	if errors.As(err, &reply) {
		r := hopReplyResult(reply, remote)
		r.Text = message.OneLine("authentication failed: " + r.Text) // no username: the text may reach the sender in a DSN
		s.hangUp(ctx, c)
		return nil, &r
	}
	return fail(0, "authentication at "+where+" failed: "+resultText(err))
}

// hangUp ends a session that is of no use: QUIT while the connection
// works, else just close it.
func (s *SMTP) hangUp(ctx context.Context, c *smtp.Client) {
	if c.Err() == nil {
		s.quit(ctx, c)
	} else {
		c.Close()
	}
}

// tlsConfig is the STARTTLS config for a connection: ours resume the
// sessions of key's level and address, except DANE's and those of an
// MTA-STS policy in testing mode (see tlsSessions); the operator's
// (SMTPOptions.TLSConfig) are left as they come.
func (s *SMTP) tlsConfig(key connKey, plan *tlsPlan) *tls.Config {
	cfg := s.policyTLSConfig(key, plan)
	if cfg == nil && s.opt.TLSConfig != nil {
		if cfg := s.opt.TLSConfig(key.host); cfg != nil {
			return cfg
		}
	}
	if cfg == nil {
		cfg = &tls.Config{ServerName: key.host, InsecureSkipVerify: !tlsVerified(key.tls), RootCAs: s.opt.RootCAs, MinVersion: tls.VersionTLS12}
	}
	if resumable(key, plan) {
		cfg.ClientSessionCache = s.sessions.cache(key)
	}
	return cfg
}

// resumable says whether a connection's STARTTLS may resume a session:
// not under DANE, nor under an MTA-STS policy in testing mode (whatever
// the route's level), whose checks must see the certificate the next hop
// shows now (see tlsSessions). An enforced policy's level is TLSMTASTS,
// which crypto/tls verifies again on a resumption.
func resumable(key connKey, plan *tlsPlan) bool {
	return key.tls != TLSDANE && (plan.sts == nil || key.tls == TLSMTASTS)
}

// run sends the job on sc and hands the connection back to the pool or
// retires it. Nil results mean the transaction never started (the
// connection died or said 421 before answering MAIL, or lacks REQUIRETLS):
// the caller tries elsewhere, with fail saying what happened.
func (s *SMTP) run(ctx context.Context, job *Job, sc *smtpConn) ([]Result, *Result) {
	where := sc.key.host + " [" + sc.key.addr + "]"
	rs, lost, id := transactJob(ctx, sc.c, job, where, remoteName(sc.key.host))
	if rs == nil {
		s.log.InfoContext(ctx, "smtp: no transaction", "id", job.ID, "host", sc.key.host, "addr", sc.key.addr, "reused", sc.reused, "err", lost.Text)
		if lost.Class == Permanent {
			// Refused before anything was sent (no REQUIRETLS for a
			// message that demands it): the session serves other mail.
			s.release(ctx, sc)
		} else {
			s.hangUp(ctx, sc.c)
		}
		return nil, lost
	}
	sc.sent++
	setHandoff(rs, sc.c, HandoffRelayed)
	for i := range rs {
		rs[i].TLSPolicy = sc.key.tls
	}
	s.log.InfoContext(ctx, "smtp: attempt", "id", job.ID, "host", sc.key.host, "addr", sc.key.addr, "tls", tlsOn(sc.c), "tls_policy", sc.key.tls,
		"reused", sc.reused, "queued_as", id, "outcome", outcomeSummary(rs))
	s.release(ctx, sc)
	return rs, nil
}

// transactJob runs job's transaction on c, which has said hello; where names
// the server in texts, remote is RemoteMTA. It returns one result per
// recipient and the server's queue ID, or, when the transaction never
// started (the connection died or a 421 came before MAIL was answered,
// with ctx not done, or the server does not offer the REQUIRETLS the
// message demands), nil results and what happened: the message was not
// handed over, so another server may take it. Checks made before anything
// is sent (SIZE, SMTPUTF8, BODY, a bad address) leave c usable.
func transactJob(ctx context.Context, c *smtp.Client, job *Job, where, remote string) (rs []Result, lost *Result, id string) {
	if max := c.MaxSize(); max > 0 && job.Size > max {
		return allResults(job, Result{Class: Permanent, Code: 552, Enhanced: sdk.EnhancedCode{5, 3, 4},
			Text:      fmt.Sprintf("message too big for %s: %d bytes, its limit is %d", where, job.Size, max),
			RemoteMTA: remote}), nil, ""
	}
	body, err := job.Open()
	if err != nil {
		return allResults(job, localResult(Temporary, 451, 4, 3, 0, "reading the message from the spool: "+resultText(err))), nil, ""
	}
	env := *job.Envelope
	env.Recipients = job.Recipients
	if job.Size > 0 {
		env.Size = job.Size
	}
	res, err := c.Send(ctx, &env, body)
	body.Close()

	if err != nil && res.Mail.Code == 0 {
		// Errors found before anything was sent. (ErrSMTPUTF8Unsupported
		// is a Reply too, so this comes before the reply checks.)
		var r Result
		switch {
		case errors.Is(err, smtp.ErrSMTPUTF8Unsupported):
			r = Result{Class: Permanent, Code: 553, Enhanced: sdk.EnhancedCode{5, 6, 7},
				Text: "SMTPUTF8 required but not supported by " + where, RemoteMTA: remote}
		case errors.Is(err, smtp.ErrBinaryMIMEUnsupported):
			r = localResult(Permanent, 554, 5, 6, 3, "the message is binary (BODY=BINARYMIME) and "+where+
				" does not accept binary content (it offers no CHUNKING and BINARYMIME); it cannot be sent there as it is")
		case errors.Is(err, smtp.ErrRequireTLSUnsupported):
			// About this server, not the message: another exchanger
			// may offer it (RFC 8689 §4.2.1), so the caller goes on.
			r = localResult(Permanent, 550, 5, 7, 30, "REQUIRETLS: "+where+" does not offer REQUIRETLS, so the message cannot be handed on with its demand for TLS")
			r.RemoteMTA = remote
			return nil, &r, ""
		case errors.Is(err, smtp.ErrBadCommand):
			r = localResult(Permanent, 501, 5, 5, 4, resultText(err))
		}
		if r.Code != 0 {
			return allResults(job, r), nil, ""
		}
	}
	if err != nil && (res.Mail.Code == 0 || res.Mail.Code == 421) && ctx.Err() == nil {
		r := localResult(Temporary, 451, 4, 4, 2, "connection to "+where+" lost: "+resultText(err))
		if res.Mail.Code == 421 {
			r = replyResult(res.Mail, remote)
		}
		r.RemoteMTA = remote
		return nil, &r, ""
	}
	return transactionResults(job, res, err, remote, "connection to "+where+" lost"), nil, res.ID
}

// transactionResults maps a transaction's replies to one Result per
// recipient (see SMTP for the rules). lost describes err when it is not a
// reply.
func transactionResults(job *Job, res smtp.Result, err error, remote, lost string) []Result {
	out := make([]Result, len(job.Recipients))
	for i := range out {
		var rcpt, data smtp.Reply
		if i < len(res.Rcpts) {
			rcpt = res.Rcpts[i]
		}
		data = res.Data
		if i < len(res.DataPerRcpt) {
			data = res.DataPerRcpt[i]
		}
		switch {
		case res.Mail.Code != 0 && res.Mail.Code/100 != 2:
			out[i] = replyResult(res.Mail, remote)
		case rcpt.Code != 0 && rcpt.Code/100 != 2:
			out[i] = replyResult(rcpt, remote)
		case rcpt.Code/100 == 2 && data.Code != 0:
			out[i] = replyResult(data, remote)
		case err != nil && isSMTPReply(err):
			// A 421 ended the session before this recipient's turn.
			var r smtp.Reply
			errors.As(err, &r)
			out[i] = replyResult(r, remote)
			if out[i].Class != Temporary {
				out[i] = localResult(Temporary, 451, 4, 4, 2, lost+": "+replyLine(r))
				out[i].RemoteMTA = remote
			}
		default:
			out[i] = localResult(Temporary, 451, 4, 4, 2, lost+": "+resultText(err))
			out[i].RemoteMTA = remote
		}
	}
	return out
}

// takeFor takes a pooled connection to h under policy, the most recently
// used first; nil if there is none. Connections past MaxIdle that the reaper has not retired
// yet are closed on the way.
func (s *SMTP) takeFor(h smtpHost, want connKey, requireTLS bool) *smtpConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idle) == 0 {
		return nil
	}
	now := time.Now()
	port := strconv.Itoa(h.port)
	for key, list := range s.idle {
		if key.host != h.name || key.tls != want.tls || key.auth != want.auth || !strings.HasSuffix(key.addr, ":"+port) {
			continue
		}
		for i := len(list) - 1; i >= 0; i-- {
			sc := list[i]
			if now.Sub(sc.idle) >= s.opt.MaxIdle {
				sc.c.Close()
				list = slices.Delete(list, i, i+1)
				continue
			}
			if requireTLS && !offersRequireTLS(sc.c) {
				continue // it serves other mail
			}
			s.putList(key, slices.Delete(list, i, i+1))
			sc.reused = true
			return sc
		}
		s.putList(key, list)
	}
	return nil
}

// offersRequireTLS reports whether c's session can take a REQUIRETLS
// message: under TLS, with REQUIRETLS offered.
func offersRequireTLS(c *smtp.Client) bool {
	_, ok := c.Extension("REQUIRETLS")
	return ok && tlsOn(c)
}

// putList stores key's idle list, deleting an empty one. s.mu is held.
func (s *SMTP) putList(key connKey, list []*smtpConn) {
	if len(list) == 0 {
		delete(s.idle, key)
	} else {
		s.idle[key] = list
	}
}

// release pools a usable connection or retires it.
func (s *SMTP) release(ctx context.Context, sc *smtpConn) {
	if sc.c.Err() != nil {
		sc.c.Close()
		return
	}
	if s.opt.MaxIdle > 0 && sc.sent < s.opt.MaxPerConn {
		s.mu.Lock()
		if !s.closed {
			sc.idle = time.Now()
			sc.reused = false
			s.idle[sc.key] = append(s.idle[sc.key], sc)
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
	s.quit(ctx, sc.c)
}

// quit sends QUIT (bounded by quitTimeout, even if ctx is done) and closes.
func (s *SMTP) quit(ctx context.Context, c *smtp.Client) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quitTimeout)
	defer cancel()
	if err := c.Quit(ctx); err != nil {
		s.log.DebugContext(ctx, "smtp: QUIT", "err", err)
	}
}

// quitAll retires connections concurrently.
func (s *SMTP) quitAll(ctx context.Context, conns []*smtpConn) {
	var wg sync.WaitGroup
	for _, sc := range conns {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					s.log.Error("smtp: panic retiring a connection", "panic", p, "stack", string(debug.Stack()))
				}
			}()
			s.quit(ctx, sc.c)
		})
	}
	wg.Wait()
}

// reap retires connections idle for longer than MaxIdle until Close.
func (s *SMTP) reap() {
	defer close(s.done)
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("smtp: idle connection reaper panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	tick := max(s.opt.MaxIdle/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.quitAll(ctx, s.expired(now))
		}
	}
}

// expired takes the connections idle for longer than MaxIdle out of the pool.
func (s *SMTP) expired(now time.Time) []*smtpConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*smtpConn
	for key, list := range s.idle {
		keep := list[:0]
		for _, sc := range list {
			if now.Sub(sc.idle) >= s.opt.MaxIdle {
				out = append(out, sc)
			} else {
				keep = append(keep, sc)
			}
		}
		s.putList(key, keep)
	}
	return out
}

// Idle returns the number of pooled connections.
func (s *SMTP) Idle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, list := range s.idle {
		n += len(list)
	}
	return n
}

// TLSHandshakes counts the STARTTLS handshakes of the transport's
// connections since NewSMTP: full, resumed (SMTPOptions.TLSSessions) and
// failed.
func (s *SMTP) TLSHandshakes() map[smtp.TLSHandshake]int64 { return s.handshakes.Counts() }

// Close stops the reaper and sends QUIT on every idle connection; its
// creator calls it once the engine has stopped (the engine never closes a
// transport). Deliver still works afterwards but pools nothing.
func (s *SMTP) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var conns []*smtpConn
	for _, list := range s.idle {
		conns = append(conns, list...)
	}
	s.idle = map[connKey][]*smtpConn{}
	s.mu.Unlock()
	close(s.stop)
	if s.done != nil {
		<-s.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
	defer cancel()
	s.quitAll(ctx, conns)
	return nil
}

// allResults gives every recipient of job the same result.
func allResults(job *Job, r Result) []Result {
	out := make([]Result, len(job.Recipients))
	for i := range out {
		out[i] = r
	}
	return out
}

// setHandoff sets the Handoff of the Delivered results among rs of a
// transaction on c: HandoffDSN when the server offers DSN (the client
// passed NOTIFY, ORCPT, ENVID and RET on), else without.
func setHandoff(rs []Result, c *smtp.Client, without Handoff) {
	h := without
	if _, ok := c.Extension("DSN"); ok {
		h = HandoffDSN
	}
	for i := range rs {
		if rs[i].Class == Delivered {
			rs[i].Handoff = h
		}
	}
}

// localResult is a result decided here, not by a remote reply (Local).
func localResult(class Class, code int, e0, e1, e2 uint16, text string) Result {
	return Result{Class: class, Code: code, Enhanced: sdk.EnhancedCode{e0, e1, e2}, Text: message.OneLine(text), Local: true}
}

// replyResult is the result a remote reply stands for.
func replyResult(r smtp.Reply, remote string) Result {
	return Result{
		Class:     replyClass(r.Code),
		Code:      r.Code,
		Enhanced:  dsn.StatusFromReply(r.Code, r.Enhanced),
		Text:      replyLine(r),
		RemoteMTA: remote,
	}
}

// hopReplyResult is the result of a greeting or EHLO refusal: always
// Temporary (RFC 5321 §3.1: another exchanger may take the mail; after the
// last one, try later), so a 5xx keeps its text but becomes 451 with a
// class 4 status.
func hopReplyResult(r smtp.Reply, remote string) Result {
	res := replyResult(r, remote)
	if res.Class != Temporary {
		res.Class = Temporary
		res.Code = 451
		res.Enhanced = dsn.StatusFromReply(451, r.Enhanced)
	}
	return res
}

// replyClass maps a reply code to a class: 2xx Delivered, 5xx Permanent,
// anything else Temporary.
func replyClass(code int) Class {
	switch code / 100 {
	case 2:
		return Delivered
	case 5:
		return Permanent
	}
	return Temporary
}

// replyLine is a reply on one line: "550 5.1.1 No such user", the lines of
// a multi-line reply joined by spaces.
func replyLine(r smtp.Reply) string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if !r.Enhanced.IsZero() {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced.String())
	}
	for _, l := range r.Lines {
		if l = strings.TrimSpace(l); l != "" {
			b.WriteByte(' ')
			b.WriteString(l)
		}
	}
	return message.OneLine(b.String())
}

func isSMTPReply(err error) bool {
	var r smtp.Reply
	return errors.As(err, &r)
}

// resultText is err's message for a Result, "" for nil.
func resultText(err error) string {
	if err == nil {
		return ""
	}
	return message.OneLine(err.Error())
}

// remoteName is RemoteMTA for a host: the name, or "[ip]" for an address.
func remoteName(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return "[" + host + "]"
	}
	return host
}

func tlsOn(c *smtp.Client) bool {
	_, ok := c.TLSConnectionState()
	return ok
}

// outcomeSummary is the classes of rs for a log line, e.g. "delivered=2 temporary=1".
func outcomeSummary(rs []Result) string {
	var n [3]int
	for _, r := range rs {
		if int(r.Class) < len(n) {
			n[r.Class]++
		}
	}
	var parts []string
	for c, k := range n {
		if k > 0 {
			parts = append(parts, Class(c).String()+"="+strconv.Itoa(k))
		}
	}
	return strings.Join(parts, " ")
}

var _ Transport = (*SMTP)(nil)
