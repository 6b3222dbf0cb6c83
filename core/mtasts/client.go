package mtasts

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/sync/singleflight"

	"github.com/mailgate/gateway/core/resolver"
)

// Defaults of Options.
const (
	DefaultTimeout = 10 * time.Second
	defaultPort    = 443
	// retryAfter is how long a failed fetch (for one domain and TXT id) is
	// remembered: the calls in that time get its error without asking the
	// policy host again (RFC 8461 §10.3: rate-limit the fetches).
	retryAfter = 5 * time.Minute
)

// Store is the durable key-value store policies are kept in across
// restarts; *queue.Spool implements it.
type Store interface {
	KVGet(key string, now time.Time) (string, bool, error)
	KVSet(ctx context.Context, key, value string, ttl time.Duration) error
}

// Options configure a Client.
type Options struct {
	// Resolver looks up the TXT records and the policy hosts' addresses;
	// the system resolver is never used. Required: without it Policy
	// fails with ErrFetch.
	Resolver *resolver.Resolver
	// RootCAs verify the policy hosts' certificates; nil = the system roots.
	RootCAs *x509.CertPool
	// Port is the policy hosts' HTTPS port; 0 = 443 (tests use another).
	Port int
	// Timeout bounds one fetch of a policy, connecting included;
	// 0 = DefaultTimeout.
	Timeout time.Duration
	// Store keeps policies across restarts under "gw:mta-sts:<domain>";
	// nil = memory only.
	Store Store
	// Now is the clock of policy lifetimes; nil = time.Now.
	Now func() time.Time
	// Log gets a record of every fetch and failure; nil = discarded.
	Log *slog.Logger
}

// Client finds the MTA-STS policies of recipient domains and caches them.
// It is safe for concurrent use and holds no goroutine between calls, so
// it needs no Close.
type Client struct {
	res     *resolver.Resolver
	port    int
	timeout time.Duration
	store   Store
	now     func() time.Time
	log     *slog.Logger
	http    *http.Client
	flight  singleflight.Group // one fetch per domain and id at a time
	cache   cache
}

// New returns a Client. It sends nothing until Policy is called.
func New(opt Options) *Client {
	c := &Client{
		res:     opt.Resolver,
		port:    opt.Port,
		timeout: opt.Timeout,
		store:   opt.Store,
		now:     opt.Now,
		log:     opt.Log,
		cache:   cache{entries: make(map[string]*entry)},
	}
	if c.port == 0 {
		c.port = defaultPort
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.http = c.newHTTPClient(opt.RootCAs)
	return c
}

// Policy returns the policy in effect for domain: nil, nil when the domain
// publishes none. A non-nil error means a policy could not be had (and no
// cached one is valid): the caller delivers without one, and reports the
// failure; FailureType(err) gives its RFC 8460 result-type
// ("sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid").
//
// A policy of mode none is returned as it is. A cached policy is used
// while unexpired if the TXT record's id is unchanged, and also when the
// record is gone (RFC 8461 §8.3: a policy is withdrawn by publishing mode
// none) or the look-up or the fetch fails (§5.1). Concurrent calls for one
// domain share one fetch. A fetch that failed is not tried again for five
// minutes unless the TXT id changes: the calls meanwhile get its error (or
// the cached policy).
func (c *Client) Policy(ctx context.Context, domain string) (*Policy, error) {
	name, ok := policyDomain(domain)
	if !ok {
		return nil, nil // no name that can publish a policy (an address literal)
	}
	if c.res == nil {
		return nil, fmt.Errorf("%w: %s: no resolver", ErrFetch, name)
	}
	cached := c.cached(ctx, name)
	id, err := c.lookupID(ctx, name)
	switch {
	case err != nil && cached != nil:
		c.log.DebugContext(ctx, "mtasts: using the cached policy", "domain", name, "id", cached.ID, "err", err)
		return cached, nil
	case err != nil:
		return nil, err
	case id == "":
		return cached, nil
	case cached != nil && cached.ID == id:
		return cached, nil
	}
	p, err := c.fetchShared(ctx, name, id)
	switch {
	case err != nil && cached != nil:
		c.log.DebugContext(ctx, "mtasts: using the cached policy", "domain", name, "id", cached.ID, "err", err)
		return cached, nil
	case err != nil:
		return nil, err
	}
	return p, nil
}

// policyDomain returns domain as the A-label name the policy host's name
// is made of, lower case, without a trailing dot; false if it is no host
// name.
func policyDomain(domain string) (string, bool) {
	d := strings.TrimSuffix(domain, ".")
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", false
	}
	a = strings.ToLower(a)
	if !validHostName(a) || len(a) > 253-len("mta-sts.") {
		return "", false
	}
	return a, true
}

// cached returns a copy of domain's unexpired cached policy, or nil.
func (c *Client) cached(ctx context.Context, domain string) *Policy {
	p := c.entry(ctx, domain).policy
	if p == nil || p.expired(c.now()) {
		return nil
	}
	return p.clone()
}

// lookupID returns the id of domain's one MTA-STS TXT record, "" when it
// has none (no record, several, or one that does not parse: §3.1). A
// temporary DNS failure is an ErrFetch.
func (c *Client) lookupID(ctx context.Context, domain string) (string, error) {
	txts, err := c.res.TXT(ctx, "_mta-sts."+domain)
	if err != nil && resolver.IsTemporary(err) {
		return "", fmt.Errorf("%w: %w", ErrFetch, err)
	}
	var records []string
	for _, t := range txts {
		if isSTSRecord(t) {
			records = append(records, t)
		}
	}
	switch len(records) {
	case 0:
		return "", nil
	case 1:
	default:
		c.log.DebugContext(ctx, "mtasts: several records, no policy", "domain", domain, "records", records)
		return "", nil
	}
	id, err := ParseRecord(records[0])
	if err != nil {
		c.log.DebugContext(ctx, "mtasts: bad record, no policy", "domain", domain, "err", err)
		return "", nil
	}
	return id, nil
}

// fetchShared fetches domain's policy for the TXT id, sharing the fetch
// with concurrent callers, and caches it. A fetch that failed less than
// retryAfter ago is not tried again: its error is returned. The fetch runs
// under its own time limit, not the caller's: a caller that gives up
// leaves it to the others; it ends by Options.Timeout.
func (c *Client) fetchShared(ctx context.Context, domain, id string) (*Policy, error) {
	if err := c.recentFailure(domain, id); err != nil {
		return nil, err
	}
	ch := c.flight.DoChan(domain+" "+id, func() (v any, err error) {
		defer func() {
			if r := recover(); r != nil {
				v, err = nil, fmt.Errorf("%w: %s: panic: %v", ErrFetch, domain, r)
			}
		}()
		own := context.WithoutCancel(ctx)
		fctx, cancel := context.WithTimeout(own, c.timeout)
		p, err := c.fetch(fctx, domain)
		cancel()
		if err != nil {
			c.log.WarnContext(ctx, "mtasts: no policy", "domain", domain, "id", id, "err", err)
			c.failed(domain, id, err)
			return nil, err
		}
		p.ID, p.Fetched = id, c.now()
		c.log.InfoContext(ctx, "mtasts: policy fetched", "domain", domain, "id", id, "mode", p.Mode, "max_age", p.MaxAge)
		sctx, cancel := context.WithTimeout(own, c.timeout) // the fetch may have used up its time
		defer cancel()
		c.remember(sctx, domain, p)
		return p, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrFetch, domain, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*Policy).clone(), nil
	}
}
