package hook

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// NewMatch compiles a hook block's match { … } into an Entry.Match
// function, which reports whether every condition m gives holds for a
// request:
//
//   - Stages: the request's stage is one of them.
//   - Clients: the client's IP (Session.ClientIP, or Envelope.ClientIP when
//     there is no session, as at predelivery) is in one of the prefixes.
//   - SenderDomains: the envelope sender's domain matches one of the
//     patterns. The null sender and a request without an envelope never
//     match.
//   - RecipientDomains: the domain of the request's Rcpt matches (rcpt,
//     predelivery and the delivery notifications name the recipient they
//     are about); without a Rcpt, any recipient of the envelope matching is
//     enough.
//   - Authenticated: whether the session is authenticated (Session.AuthUser,
//     or Envelope.AuthUser without a session) is the value given.
//   - Commands: at the command stage, the request's verb is one of them;
//     the other stages are not affected.
//
// A domain pattern is a domain name, matched whole, or "*.domain", which
// matches every subdomain of domain at any depth but not domain itself.
// Comparison ignores case and a trailing dot; internationalized domains
// are compared as received, so patterns in A-label form match only mail
// that uses A-labels.
//
// The zero Match matches every request. NewMatch fails on a stage name
// that is not in sdk.Stages or an empty domain pattern.
func NewMatch(m config.Match) (func(*Request) bool, error) {
	for _, st := range m.Stages {
		if !slices.Contains(sdk.Stages, st) {
			return nil, fmt.Errorf("hook: match: %q is not a stage", st)
		}
	}
	sender, err := newDomainSet(m.SenderDomains)
	if err != nil {
		return nil, fmt.Errorf("hook: match: sender_domain: %w", err)
	}
	rcpt, err := newDomainSet(m.RecipientDomains)
	if err != nil {
		return nil, fmt.Errorf("hook: match: recipient_domain: %w", err)
	}
	mt := &matcher{
		stages:  slices.Clone(m.Stages),
		clients: slices.Clone(m.Clients),
		sender:  sender,
		rcpt:    rcpt,
		verbs:   slices.Clone(m.Commands),
	}
	if m.Authenticated != nil {
		mt.auth, mt.checkAuth = *m.Authenticated, true
	}
	return mt.match, nil
}

type matcher struct {
	stages    []sdk.Stage
	clients   []netip.Prefix
	sender    domainSet
	rcpt      domainSet
	auth      bool
	checkAuth bool
	verbs     []string // at the command stage only
}

func (m *matcher) match(req *Request) bool {
	if len(m.stages) > 0 && !slices.Contains(m.stages, req.Stage) {
		return false
	}
	if len(m.verbs) > 0 && req.Stage == sdk.StageCommand && !slices.Contains(m.verbs, req.Command) {
		return false
	}
	if len(m.clients) > 0 && !m.clientIn(req) {
		return false
	}
	if !m.sender.empty() {
		if req.Envelope == nil || req.Envelope.Sender.IsNull() || !m.sender.match(req.Envelope.Sender) {
			return false
		}
	}
	if !m.rcpt.empty() && !m.rcptIn(req) {
		return false
	}
	if m.checkAuth && authenticated(req) != m.auth {
		return false
	}
	return true
}

func (m *matcher) clientIn(req *Request) bool {
	var ip netip.Addr
	switch {
	case req.Session != nil:
		ip = req.Session.ClientIP
	case req.Envelope != nil:
		ip, _ = netip.ParseAddr(req.Envelope.ClientIP)
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range m.clients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (m *matcher) rcptIn(req *Request) bool {
	if req.Rcpt != nil {
		return m.rcpt.match(req.Rcpt.Address)
	}
	if req.Envelope == nil {
		return false
	}
	for _, r := range req.Envelope.Recipients {
		if m.rcpt.match(r.Address) {
			return true
		}
	}
	return false
}

func authenticated(req *Request) bool {
	switch {
	case req.Session != nil:
		return req.Session.AuthUser != ""
	case req.Envelope != nil:
		return req.Envelope.AuthUser != ""
	}
	return false
}

// domainSet is a list of domain patterns: exact names and ".suffix"es (from
// "*.suffix").
type domainSet struct {
	exact    []string
	suffixes []string // with the leading dot
}

func newDomainSet(patterns []string) (domainSet, error) {
	var s domainSet
	for _, p := range patterns {
		rest, wild := strings.CutPrefix(p, "*.")
		rest = strings.ToLower(strings.TrimSuffix(rest, "."))
		switch {
		case rest == "" && wild:
			return s, fmt.Errorf("%q has no domain after \"*.\"", p)
		case rest == "":
			return s, errors.New("an empty domain")
		case strings.Contains(rest, "*"):
			return s, fmt.Errorf("%q: '*' is allowed only as the first label, as in \"*.example.org\"", p)
		case wild:
			s.suffixes = append(s.suffixes, "."+rest)
		default:
			s.exact = append(s.exact, rest)
		}
	}
	return s, nil
}

func (s domainSet) empty() bool { return len(s.exact) == 0 && len(s.suffixes) == 0 }

func (s domainSet) match(a envelope.Address) bool {
	d := a.DomainFold()
	if d == "" {
		return false
	}
	if slices.Contains(s.exact, d) {
		return true
	}
	for _, suf := range s.suffixes {
		if len(d) > len(suf) && strings.HasSuffix(d, suf) {
			return true
		}
	}
	return false
}
