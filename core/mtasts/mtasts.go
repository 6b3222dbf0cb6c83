// Package mtasts owns SMTP MTA Strict Transport Security (RFC 8461) for
// outbound mail: it finds the policy a recipient domain publishes and
// tells the SMTP transport which MX hosts that policy allows.
//
// It follows RFC 8461:
//   - §3.1: the TXT record at _mta-sts.<domain> ("v=STSv1; id=…"),
//     ParseRecord; a domain with no such record, or with more than one,
//     has no policy;
//   - §3.2: the policy file (ParsePolicy), max_age capped at 31557600 s;
//   - §3.3: the HTTPS fetch of https://mta-sts.<domain>/.well-known/mta-sts.txt:
//     the host resolved through core/resolver (never the system resolver),
//     a certificate valid for mta-sts.<domain>, no redirects, no HTTP
//     caching, Content-Type text/plain, at most 64 KiB, a time limit;
//   - §4.1: MX host validation (Policy.Match);
//   - §5.1 and §8.3: a cached policy is used while unexpired when the TXT
//     id is unchanged, and also when the TXT record is gone or the TXT
//     look-up or the fetch fails.
//
// Which MX hosts to try and how strictly to check their certificates is
// the caller's (core/delivery); so is reporting failures (core/tlsrpt),
// for which FailureType gives the RFC 8460 result type of an error. A
// transport uses it so:
//
//	p, err := client.Policy(ctx, domain)
//	switch {
//	case err != nil:
//		// no policy could be had: deliver as without one, report FailureType(err)
//	case p == nil || p.Mode == mtasts.ModeNone:
//		// no policy
//	default:
//		// for each MX host: p.Match(host), else enforce skips it and testing
//		// reports it; TLS with a certificate valid for the host's name,
//		// else enforce defers and testing reports and delivers anyway
//	}
//
// Policies are cached in memory and, when Options.Store is set, in the
// spool's key-value store under "gw:mta-sts:<domain>" for their max_age,
// so they survive a restart; the Store is read once per domain, not per
// delivery.
package mtasts

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 §3.2).
type Mode string

// The modes a policy may have.
const (
	// ModeEnforce: deliver only to a matching MX host over TLS with a
	// certificate valid for its name.
	ModeEnforce Mode = "enforce"
	// ModeTesting: check as for enforce, report failures, deliver anyway.
	ModeTesting Mode = "testing"
	// ModeNone: the domain has withdrawn its policy; nothing to check.
	ModeNone Mode = "none"
)

// MaxMaxAge is the longest lifetime a policy may claim (RFC 8461 §3.2);
// a longer max_age is cut to it.
const MaxMaxAge = 31557600 * time.Second

// Policy is an MTA-STS policy of a domain. A *Policy returned by a Client
// is the caller's own copy.
type Policy struct {
	Mode   Mode
	MX     []string // patterns as written ("mx1.example.com", "*.example.net")
	MaxAge time.Duration
	// ID is the id of the TXT record the policy was fetched under; empty
	// for a policy from ParsePolicy.
	ID string
	// Fetched is when the policy was fetched; zero from ParsePolicy.
	Fetched time.Time
}

// Match reports whether mxHost (an MX host name, as core/resolver gives
// it) matches one of the policy's mx patterns (RFC 8461 §4.1): equal
// names, or a pattern "*.rest" and a host of one more label in front of
// rest. Names compare without regard to ASCII case or a trailing dot.
func (p *Policy) Match(mxHost string) bool {
	if p == nil {
		return false
	}
	host := strings.ToLower(strings.TrimSuffix(mxHost, "."))
	if host == "" {
		return false
	}
	for _, pat := range p.MX {
		pat = strings.ToLower(pat)
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// Strings returns the policy as the lines of a policy file, in the order
// version, mode, mx…, max_age: the policy-string of a TLS-RPT report
// (RFC 8460 §4.4).
func (p *Policy) Strings() []string {
	out := make([]string, 0, 3+len(p.MX))
	out = append(out, "version: STSv1", "mode: "+string(p.Mode))
	for _, mx := range p.MX {
		out = append(out, "mx: "+mx)
	}
	return append(out, "max_age: "+strconv.FormatInt(int64(p.MaxAge/time.Second), 10))
}

// String returns the policy as a policy file, each line of Strings ended
// by LF; ParsePolicy reads it back.
func (p *Policy) String() string {
	return strings.Join(p.Strings(), "\n") + "\n"
}

// clone returns a copy of p that shares nothing with it.
func (p *Policy) clone() *Policy {
	c := *p
	c.MX = append([]string(nil), p.MX...)
	return &c
}

// expired reports whether p's max_age has run out at now.
func (p *Policy) expired(now time.Time) bool {
	return !now.Before(p.Fetched.Add(p.MaxAge))
}

// The three kinds of failure to get a policy. Every error Client.Policy
// returns wraps one of them; FailureType names them as RFC 8460 does.
var (
	// ErrFetch: the policy could not be fetched (DNS failure, connection
	// refused, timeout, an HTTP status other than 200, a redirect).
	ErrFetch = errors.New("mtasts: policy fetch failed")
	// ErrInvalid: the policy host answered with something that is not a
	// valid policy (syntax, Content-Type, size).
	ErrInvalid = errors.New("mtasts: invalid policy")
	// ErrWebPKI: the policy host's certificate is not valid for
	// mta-sts.<domain> under the trusted roots.
	ErrWebPKI = errors.New("mtasts: policy host certificate not valid")
)

// FailureType returns the RFC 8460 §4.3.2.2 result type of an error from
// Client.Policy: "sts-policy-fetch-error", "sts-policy-invalid" or
// "sts-webpki-invalid"; "" for nil or an error of another kind.
func FailureType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrWebPKI):
		return "sts-webpki-invalid"
	case errors.Is(err, ErrInvalid):
		return "sts-policy-invalid"
	case errors.Is(err, ErrFetch):
		return "sts-policy-fetch-error"
	}
	return ""
}
