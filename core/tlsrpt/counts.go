package tlsrpt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Bounds on one domain's day, so that its value fits the spool's key-value
// store (64 KiB a value) whatever the sessions were.
const (
	maxPolicies = 16       // policies per domain and day; sessions under more are not counted
	maxDetails  = 32       // failure-details per policy; more failures count in the summary only
	maxStrings  = 32       // policy strings kept per policy
	maxText     = 255      // bytes of a policy string or a Failure field
	maxValue    = 60 << 10 // bytes of a stored value
	maxCount    = 1 << 53  // a count JSON numbers carry exactly
)

// counts is one policy domain's day: the report's policies, and the rua
// that have had the report already. Success and Failure add to one in
// memory; the store keeps it as JSON.
type counts struct {
	Policies []PolicyResult `json:"policies"`
	Sent     []string       `json:"sent,omitempty"`
}

// add counts n sessions under policy p: successes when f is nil, else
// failures with f's details. It is false when the domain's day has its
// maxPolicies already and p is not one of them.
func (c *counts) add(p Policy, f *Failure, n int64) bool {
	pr := c.policy(cleanPolicy(p))
	if pr == nil {
		return false
	}
	if f == nil {
		pr.Summary.Successful = plus(pr.Summary.Successful, n)
		return true
	}
	pr.Summary.Failed = plus(pr.Summary.Failed, n)
	pr.addDetail(cleanFailure(*f), n)
	return true
}

// merge adds o's counts and sent rua to c; it is false when some of o's
// policies found no room.
func (c *counts) merge(o *counts) bool {
	all := true
	for _, opr := range o.Policies {
		pr := c.policy(opr.Policy)
		if pr == nil {
			all = false
			continue
		}
		pr.Summary.Successful = plus(pr.Summary.Successful, opr.Summary.Successful)
		pr.Summary.Failed = plus(pr.Summary.Failed, opr.Summary.Failed)
		for _, d := range opr.FailureDetails {
			pr.addDetail(d.Failure, d.Sessions)
		}
	}
	for _, uri := range o.Sent {
		if !slices.Contains(c.Sent, uri) {
			c.Sent = append(c.Sent, uri)
		}
	}
	return all
}

// policy returns c's entry for p (already clean), adding one with a copy of
// p's strings if there is room; nil if there is none.
func (c *counts) policy(p Policy) *PolicyResult {
	for i := range c.Policies {
		if samePolicy(c.Policies[i].Policy, p) {
			return &c.Policies[i]
		}
	}
	if len(c.Policies) >= maxPolicies {
		return nil
	}
	p.Strings = slices.Clone(p.Strings)
	c.Policies = append(c.Policies, PolicyResult{Policy: p})
	return &c.Policies[len(c.Policies)-1]
}

func (pr *PolicyResult) addDetail(f Failure, n int64) {
	for i := range pr.FailureDetails {
		if pr.FailureDetails[i].Failure == f {
			pr.FailureDetails[i].Sessions = plus(pr.FailureDetails[i].Sessions, n)
			return
		}
	}
	if len(pr.FailureDetails) < maxDetails {
		pr.FailureDetails = append(pr.FailureDetails, FailureDetail{Failure: f, Sessions: n})
	}
}

// plus adds counts, stopping short of maxCount (a count decodeCounts
// refuses) rather than wrapping.
func plus(a, b int64) int64 {
	if a+b >= maxCount {
		return maxCount - 1
	}
	return a + b
}

func samePolicy(a, b Policy) bool {
	return a.Type == b.Type && a.MXHost == b.MXHost && a.Domain == b.Domain && slices.Equal(a.Strings, b.Strings)
}

// cleanPolicy bounds p's strings and names its type; it copies nothing
// when nothing needs changing (the common case, on the delivery path).
func cleanPolicy(p Policy) Policy {
	if p.Type == "" {
		p.Type = TypeNoPolicy
	}
	p.MXHost = truncate(p.MXHost)
	if len(p.Strings) > maxStrings {
		p.Strings = p.Strings[:maxStrings]
	}
	for i, s := range p.Strings {
		if t := truncate(s); t != s {
			p.Strings = slices.Clone(p.Strings)
			p.Strings[i] = t
		}
	}
	return p
}

func cleanFailure(f Failure) Failure {
	if f.ResultType == "" {
		f.ResultType = ResultValidationFailure
	}
	for _, s := range []*string{&f.ResultType, &f.SendingMTAIP, &f.ReceivingMXHostname,
		&f.ReceivingMXHelo, &f.ReceivingIP, &f.AdditionalInfo, &f.ReasonCode} {
		*s = truncate(*s)
	}
	return f
}

// truncate cuts s to maxText bytes at a UTF-8 boundary.
func truncate(s string) string {
	if len(s) <= maxText {
		return s
	}
	i := maxText
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// encode is c as the store keeps it. A value over maxValue sheds failure
// details (from the policy with most) and then policies until it fits; the
// second return says how many entries went.
func (c *counts) encode() (string, int, error) {
	shed := 0
	for {
		b, err := json.Marshal(c)
		if err != nil {
			return "", shed, fmt.Errorf("tlsrpt: encode counts: %w", err)
		}
		if len(b) <= maxValue {
			return string(b), shed, nil
		}
		n := c.shed(len(b) - maxValue)
		if n == 0 {
			return "", shed, errors.New("tlsrpt: encode counts: too big with nothing left to shed")
		}
		shed += n
	}
}

// shed drops entries until about over bytes of JSON are gone, and returns
// how many it dropped.
func (c *counts) shed(over int) int {
	n := 0
	for over > 0 {
		size := c.shedOne()
		if size == 0 {
			break
		}
		over -= size
		n++
	}
	return n
}

// shedOne drops the last failure detail of the policy with most, or when
// none has any the last policy, and returns the size of its JSON (0 when
// there was nothing to drop).
func (c *counts) shedOne() int {
	most := -1
	for i := range c.Policies {
		if n := len(c.Policies[i].FailureDetails); n > 0 && (most < 0 || n > len(c.Policies[most].FailureDetails)) {
			most = i
		}
	}
	var dropped any
	switch {
	case most >= 0:
		fd := c.Policies[most].FailureDetails
		dropped = fd[len(fd)-1]
		c.Policies[most].FailureDetails = fd[:len(fd)-1]
	case len(c.Policies) > 0:
		dropped = c.Policies[len(c.Policies)-1]
		c.Policies = c.Policies[:len(c.Policies)-1]
	default:
		return 0
	}
	b, _ := json.Marshal(dropped)
	return len(b) + 1 // and its comma
}

// decodeCounts reads a stored value back, refusing what this package never
// writes: a policy without a type, a count out of range, more entries than
// the bounds allow.
func decodeCounts(v string) (*counts, error) {
	var c counts
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		return nil, fmt.Errorf("tlsrpt: stored counts: %w", err)
	}
	if len(c.Policies) > maxPolicies {
		return nil, fmt.Errorf("tlsrpt: stored counts: %d policies, more than %d", len(c.Policies), maxPolicies)
	}
	for _, pr := range c.Policies {
		if err := pr.check(); err != nil {
			return nil, fmt.Errorf("tlsrpt: stored counts: %w", err)
		}
	}
	return &c, nil
}

func (pr *PolicyResult) check() error {
	if pr.Policy.Type == "" {
		return errors.New("a policy without a type")
	}
	if len(pr.FailureDetails) > maxDetails {
		return fmt.Errorf("%d failure details, more than %d", len(pr.FailureDetails), maxDetails)
	}
	n := []int64{pr.Summary.Successful, pr.Summary.Failed}
	for _, d := range pr.FailureDetails {
		n = append(n, d.Sessions)
	}
	for _, v := range n {
		if v < 0 || v >= maxCount {
			return fmt.Errorf("count %d out of range", v)
		}
	}
	return nil
}
