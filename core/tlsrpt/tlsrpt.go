// Package tlsrpt owns SMTP TLS Reporting (RFC 8460) on the sending side:
// it counts, per recipient (policy) domain and UTC day, the outbound TLS
// sessions that succeeded and those that failed with their result types
// (§4.3), keeps the counts in the spool's key-value store, and once the day
// is over sends each domain that publishes a TLSRPT record (§3,
// `_smtp._tls.<domain>`) the aggregate report (§4.4) gzipped, by mail
// through the gateway's own queue (§5.3) or by HTTPS POST (§5.4).
//
// Success and Failure are called on the delivery path: they only add to
// counts in memory. Run owns the rest: it writes the counts to the Store
// every minute (and when it ends), so a restart keeps them; after 00:00
// UTC plus a random delay of one to three hours (§4.1: not everyone at
// midnight) it sends the finished days, and retries the reports it could
// not deliver every hour until two days after the day's end (§5.5). A
// report delivered to some rua and not others is retried only to the
// others. A crash loses at most the last minute's counts, and may send a
// report delivered just before it again, under the same Report-ID that
// receivers use to drop duplicates (§5.3).
//
// HTTPS rua hosts are reached at the addresses the Resolver gives, their
// certificate is verified against Options.RootCAs, and redirects are not
// followed. A report mail carries TLS-Required: No (RFC 8689 §5), since
// §5.3 wants reports delivered despite TLS failures.
//
// The store holds one key per domain and day, "gw:tlsrpt:<YYYY-MM-DD>:<domain>",
// whose value is the domain's policies in the report's own JSON shape plus
// the rua already served; bounds on policies, failure details and text
// keep it under the store's 64 KiB. A domain that publishes no record
// costs one TXT look-up when its day is sent, and its counts are then
// dropped.
package tlsrpt

import (
	"context"
	"crypto/x509"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/resolver"
)

// PolicyType is the policy-type of a report's policy (§4.4).
type PolicyType string

// The policy types.
const (
	TypeSTS      PolicyType = "sts"
	TypeTLSA     PolicyType = "tlsa"
	TypeNoPolicy PolicyType = "no-policy-found"
)

// The result types of §4.3, for Failure.ResultType.
const (
	ResultSTARTTLSNotSupported    = "starttls-not-supported"
	ResultCertificateHostMismatch = "certificate-host-mismatch"
	ResultCertificateExpired      = "certificate-expired"
	ResultCertificateNotTrusted   = "certificate-not-trusted"
	ResultValidationFailure       = "validation-failure"
	ResultTLSAInvalid             = "tlsa-invalid"
	ResultDNSSECInvalid           = "dnssec-invalid"
	ResultDANERequired            = "dane-required"
	ResultSTSPolicyFetchError     = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid        = "sts-policy-invalid"
	ResultSTSWebPKIInvalid        = "sts-webpki-invalid"
)

// Policy is the policy a session was held to: the "policy" object of a
// report (§4.4), with its JSON names.
type Policy struct {
	Domain  string     `json:"policy-domain"`           // the recipient domain
	Type    PolicyType `json:"policy-type"`             // "" counts as no-policy-found
	Strings []string   `json:"policy-string,omitempty"` // the STS policy lines, or the TLSA records as text
	MXHost  string     `json:"mx-host,omitempty"`       // the MX host (pattern) for sts; "" for tlsa
}

// Failure is one failed session: a "failure-details" entry of a report
// (§4.4) without its count, with its JSON names. Sessions with equal
// Failures are counted together.
type Failure struct {
	ResultType          string `json:"result-type"` // one of the Result constants; "" counts as validation-failure
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo     string `json:"receiving-mx-helo,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	// AdditionalInfo is additional-information: per §4.4 a URI pointing
	// to more about the failure, not free text; never a message's content.
	AdditionalInfo string `json:"additional-information,omitempty"`
	// ReasonCode is failure-reason-code: the TLS error as text (for
	// example the verification error), never a message's content.
	ReasonCode string `json:"failure-reason-code,omitempty"`
}

// Store is what the Reporter needs of a durable key-value store;
// *queue.Spool implements it. KVKeys lists the live keys under a prefix.
type Store interface {
	KVGet(key string, now time.Time) (string, bool, error)
	KVSet(ctx context.Context, key, value string, ttl time.Duration) error
	KVDelete(ctx context.Context, key string) error
	KVKeys(prefix string, now time.Time) ([]string, error)
}

// Options configure a Reporter.
type Options struct {
	Organization string // organization-name of the reports (tls_reports.organization)
	From         string // contact-info and the mail's From (tls_reports.from); its domain is the submitter
	// Resolver looks up _smtp._tls.<domain> and the addresses of HTTPS rua
	// hosts; SendDay fails without one. Never the system resolver.
	Resolver *resolver.Resolver
	// RootCAs verify HTTPS rua servers; nil means the system roots.
	RootCAs *x509.CertPool
	// HTTPSPort replaces the port of every HTTPS rua; 0 keeps the URI's
	// (443 by default). The test seam.
	HTTPSPort int
	// Mail queues a message (the lead wires it to our own queue); mailto
	// rua fail without it. The message carries TLS-Required: No (RFC 8689
	// §5; §5.3 wants reports delivered despite TLS failures) and should be
	// DKIM-signed by From's domain (§5.3).
	Mail  func(ctx context.Context, from string, to []string, msg []byte) error
	Store Store // nil = memory only: counts do not survive a restart
	Now   func() time.Time
	Log   *slog.Logger
}

// Reporter counts TLS sessions and sends the daily reports. Its methods are
// safe for concurrent use.
type Reporter struct {
	org, from, submitter string
	resolver             *resolver.Resolver
	mail                 func(ctx context.Context, from string, to []string, msg []byte) error
	post                 *poster
	store                Store
	now                  func() time.Time
	log                  *slog.Logger

	sendDelay time.Duration // after 00:00 UTC before a day is sent
	tick      time.Duration // how often Run writes the counts
	retry     time.Duration // how soon Run retries undelivered reports

	mu      sync.Mutex
	pending map[dayDomain]*counts // counted since the last flush

	storeMu sync.Mutex // one flush or SendDay at a time: they rewrite the same keys
}

// dayDomain names one report: a policy domain's UTC day ("2006-01-02").
type dayDomain struct{ day, domain string }

// New returns a Reporter. It does no I/O.
func New(opt Options) *Reporter {
	r := &Reporter{
		org:       opt.Organization,
		from:      opt.From,
		submitter: submitterOf(opt.From),
		resolver:  opt.Resolver,
		mail:      opt.Mail,
		post:      newPoster(opt.Resolver, opt.RootCAs, opt.HTTPSPort),
		store:     opt.Store,
		now:       opt.Now,
		log:       opt.Log,
		sendDelay: randomDelay(),
		tick:      time.Minute,
		retry:     time.Hour,
		pending:   make(map[dayDomain]*counts),
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.store == nil {
		r.store = newMemStore(r.now)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// submitterOf is the domain of the From address, the submitter of §5.3.
func submitterOf(from string) string {
	_, d, _ := strings.Cut(from, "@")
	return envelope.FoldDomain(d)
}

// Success counts one session that met policy p.
func (r *Reporter) Success(ctx context.Context, p Policy) {
	r.count(p, nil)
}

// Failure counts one session that failed policy p as f says.
func (r *Reporter) Failure(ctx context.Context, p Policy, f Failure) {
	r.count(p, &f)
}

func (r *Reporter) count(p Policy, f *Failure) {
	domain := normalDomain(p.Domain)
	if domain == "" {
		return
	}
	p.Domain = domain
	k := dayDomain{day: dayOf(r.now()), domain: domain}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.pending[k]
	if c == nil {
		c = &counts{}
		r.pending[k] = c
	}
	if !c.add(p, f, 1) {
		r.log.Debug("tlsrpt: too many policies for one domain and day; session not counted", "domain", domain)
	}
}

// normalDomain folds a domain's ASCII case and drops a trailing dot; it is
// "" for what cannot be a domain (empty, longer than 253 octets, spaces or
// control characters), which is not counted.
func normalDomain(d string) string {
	d = envelope.FoldDomain(d)
	if d == "" || len(d) > 253 {
		return ""
	}
	for i := 0; i < len(d); i++ {
		if d[i] <= ' ' || d[i] == 0x7f {
			return ""
		}
	}
	return d
}

// dayOf is the UTC day of t as the store's keys write it.
func dayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }
