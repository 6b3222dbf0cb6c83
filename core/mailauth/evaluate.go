package mailauth

import (
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mailgate/gateway/core/resolver"
)

// evaluateDMARC judges every author domain against its record and the SPF
// and DKIM outcomes, and keeps the most severe outcome (RFC 7489 §6.6.1:
// the strictest policy among the checks that fail). authorErr is
// authorDomains' error: there is nothing to judge.
func (c *Checker) evaluateDMARC(authorErr error, recs []policyRecord, spf spfOutcome, dkims []dkimOutcome) dmarcOutcome {
	if authorErr != nil {
		return dmarcOutcome{result: "permerror", reason: authorErr.Error(), unjudged: true}
	}
	var worst dmarcOutcome
	for _, p := range recs {
		o := c.judge(p, spf, dkims)
		if worst.result == "" || severity(o) > severity(worst) {
			worst = o
		}
	}
	return worst
}

// judge is the DMARC outcome for one author domain.
func (c *Checker) judge(p policyRecord, spf spfOutcome, dkims []dkimOutcome) dmarcOutcome {
	o := dmarcOutcome{domain: p.author}
	switch {
	case p.err != nil && resolver.IsTemporary(p.err):
		o.result, o.reason = "temperror", "DMARC record unavailable"
		return o
	case p.err != nil:
		o.result, o.reason = "permerror", p.err.Error()
		return o
	case p.rec == nil:
		o.result = "none"
		return o
	}
	rec := p.rec
	o.policy = string(rec.Policy)
	if p.at != p.author && rec.SubdomainPolicy != "" {
		o.policy = string(rec.SubdomainPolicy)
	}
	spfAligned := spf.domain != "" && aligned(spf.domain, p.author, rec.SPFAlignment)
	temp := spfAligned && spf.result == "temperror"
	if spfAligned && spf.result == "pass" {
		o.result = "pass"
		return o
	}
	for _, d := range dkims {
		if !aligned(d.domain, p.author, rec.DKIMAlignment) {
			continue
		}
		if d.result == "pass" {
			o.result = "pass"
			return o
		}
		temp = temp || d.result == "temperror"
	}
	if temp {
		o.result, o.reason = "temperror", "an aligned identifier could not be checked"
		return o
	}
	o.result = "fail"
	if rec.Percent != nil && *rec.Percent < 100 && !c.opt.Sample(*rec.Percent) {
		o.policy = weaker(o.policy) // RFC 7489 §6.6.4: out of the sample
	}
	return o
}

// weaker is the next policy down, for messages outside a pct= sample.
func weaker(p string) string {
	switch p {
	case dmarc.PolicyReject:
		return dmarc.PolicyQuarantine
	default:
		return string(dmarc.PolicyNone)
	}
}

// severity orders outcomes: a fail by its policy first, then temperror
// (by policy), permerror, pass, none.
func severity(o dmarcOutcome) int {
	n := 0
	switch o.result {
	case "fail":
		n = 40
	case "temperror":
		n = 30
	case "permerror":
		n = 20
	case "pass":
		n = 10
	}
	switch o.policy {
	case dmarc.PolicyReject:
		n += 3
	case dmarc.PolicyQuarantine:
		n += 2
	case string(dmarc.PolicyNone):
		n++
	}
	return n
}
