package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

// dmarcOutcome is the DMARC evaluation of the message.
type dmarcOutcome struct {
	result string // pass, fail, none, temperror, permerror
	policy string // none, quarantine, reject after pct; "" without a record
	domain string // the From: domain judged
	reason string
	// unjudged: the message has no author domain DMARC can judge, or too
	// many (permerror); dmarc = "enforce" refuses it.
	unjudged bool
}

// policyRecord is the DMARC record that governs one author domain.
type policyRecord struct {
	author string        // the From: domain
	at     string        // where the record was found: author or its org domain
	rec    *dmarc.Record // nil: none, or err
	err    error         // temporary (resolver.IsTemporary) or a bad record
}

// The reasons authorDomains gives no author domain to judge. Each makes
// the message one DMARC cannot judge (RFC 7489 §6.6.1 allows refusing
// it): letting it through under dmarc = "enforce" would be a way around
// p=reject, for readers show a From: all the same (an address in an
// encoded word, say).
var (
	errNoFrom = errors.New("no From: field")
	//lint:ignore ST1005 it names the From: field as written, and is shown in the reply
	errNoAuthorDomain = errors.New("From: has no address with a domain")
	//lint:ignore ST1005 it names the From: field as written, and is shown in the reply
	errManyAuthors = fmt.Errorf("From: has more than %d author domains", maxAuthorDomains)
)

// authorDomains returns the distinct domains (lower case) of every
// address in every From: field. Several From: fields, or several
// addresses in one, are all judged (RFC 7489 §6.6.1) and the strictest
// failing policy applies: a second From: field cannot hide the one a
// reader sees. More than maxAuthorDomains is errManyAuthors: each costs
// up to two look-ups, and judging only some would let the others pass.
func authorDomains(header []sdk.HeaderField) ([]string, error) {
	var out []string
	seen := false
	for _, f := range header {
		if !strings.EqualFold(f.Name, "From") {
			continue
		}
		seen = true
		for _, d := range AddressDomains(f.Value) {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
			if len(out) > maxAuthorDomains {
				return nil, errManyAuthors
			}
		}
	}
	switch {
	case !seen:
		return nil, errNoFrom
	case len(out) == 0:
		return nil, errNoAuthorDomain
	}
	return out, nil
}

// addressParser decodes encoded words of any charset as they are: only the
// addresses matter here.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// AddressDomains returns the domains (lower case, no trailing dot) of the
// addresses in an address-list header value. What net/mail cannot parse
// is scanned leniently for every "@domain" instead: judging more domains
// than a reader sees only makes the strictest policy apply.
func AddressDomains(v string) []string {
	var out []string
	if list, err := addressParser.ParseList(v); err == nil {
		for _, a := range list {
			if at := strings.LastIndexByte(a.Address, '@'); at >= 0 {
				out = appendDomain(out, a.Address[at+1:])
			}
		}
		return out
	}
	for i := 0; i < len(v); i++ {
		if v[i] != '@' {
			continue
		}
		j := i + 1
		for j < len(v) && (isLetDig(v[j]) || v[j] == '.' || v[j] == '-') {
			j++
		}
		out = appendDomain(out, v[i+1:j])
	}
	return out
}

func isLetDig(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func appendDomain(out []string, d string) []string {
	d = strings.Trim(envelope.FoldDomain(d), ".")
	if d == "" || slices.Contains(out, d) {
		return out
	}
	return append(out, d)
}

// OrgDomain is the organizational domain of d (RFC 7489 §3.2): its
// registrable part by the public suffix list, or d itself when d is a
// public suffix.
func OrgDomain(d string) string {
	d = strings.Trim(envelope.FoldDomain(d), ".")
	if org, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return org
	}
	return d
}

// aligned reports whether identifier domain id aligns with author domain
// from: the same name in strict mode, the same organizational domain in
// relaxed mode.
func aligned(id, from string, mode dmarc.AlignmentMode) bool {
	id, from = envelope.FoldDomain(id), envelope.FoldDomain(from)
	if id == "" || from == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return id == from
	}
	return OrgDomain(id) == OrgDomain(from)
}

// lookupPolicies finds the DMARC record of each author domain.
func (c *Checker) lookupPolicies(ctx context.Context, authors []string) []policyRecord {
	out := make([]policyRecord, len(authors))
	for i, a := range authors {
		out[i] = c.lookupPolicy(ctx, a)
	}
	return out
}

// lookupPolicy finds the record for author (RFC 7489 §6.6.3): at
// _dmarc.<author>, else at _dmarc.<its organizational domain>.
func (c *Checker) lookupPolicy(ctx context.Context, author string) policyRecord {
	p := policyRecord{author: author, at: author}
	p.rec, p.err = c.fetchRecord(ctx, author)
	if p.rec == nil && p.err == nil {
		if org := OrgDomain(author); org != author {
			p.at = org
			p.rec, p.err = c.fetchRecord(ctx, org)
		}
	}
	return p
}

// fetchRecord reads the DMARC record at _dmarc.<domain>: nil, nil when
// there is none; an error for a DNS failure (temporary) or a record that
// does not parse, or several records (permanent).
func (c *Checker) fetchRecord(ctx context.Context, domain string) (*dmarc.Record, error) {
	txts, err := c.opt.Resolver.TXT(ctx, "_dmarc."+domain)
	if err != nil {
		if resolver.IsTemporary(err) {
			return nil, err
		}
		return nil, nil // NXDOMAIN, or not a name: no record
	}
	var recs []string
	for _, t := range txts {
		if isDMARC1(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return nil, nil
	case 1:
		return dmarc.Parse(recs[0])
	default:
		return nil, errors.New("dmarc: several DMARC records")
	}
}

// isDMARC1 reports whether a TXT record is a DMARC record: its first tag
// is v=DMARC1.
func isDMARC1(t string) bool {
	k, v, ok := strings.Cut(t, "=")
	if !ok || strings.TrimSpace(k) != "v" {
		return false
	}
	v, _, _ = strings.Cut(v, ";")
	return strings.TrimSpace(v) == "DMARC1"
}
