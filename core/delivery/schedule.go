package delivery

// This file holds the engine's pure scheduling rules: the defaults of the
// delivery settings, grouping a message's recipients by destination, route
// selection, the retry back-off and the hop (Received) count.

import (
	"strings"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// withDefaults returns d with its zero fields filled from
// config.DefaultDelivery, so that a hand-built Delivery works as well as a
// loaded one.
//
// DelayWarning is the one field whose zero value has a meaning of its own:
// config documents 0 as "never". config.Load always fills Retry, so a
// Delivery with an empty Retry is taken as hand-built (tests, embedding) and
// gets every default, DelayWarning 4h included; in a loaded one 0 keeps
// meaning never. A negative DelayWarning is never in both cases.
func withDefaults(d config.Delivery) config.Delivery {
	def := config.DefaultDelivery()
	if len(d.Retry) == 0 {
		d.Retry = def.Retry
		if d.DelayWarning == 0 {
			d.DelayWarning = def.DelayWarning
		}
	}
	if d.MaxConnections <= 0 {
		d.MaxConnections = def.MaxConnections
	}
	if d.MaxConnectionsPerDomain <= 0 {
		d.MaxConnectionsPerDomain = def.MaxConnectionsPerDomain
	}
	if d.MaxLifetime <= 0 {
		d.MaxLifetime = def.MaxLifetime
	}
	if d.TLS == "" {
		d.TLS = def.TLS
	}
	return d
}

// RetryDelay is the wait after a message's attempt number attempts (0 for
// the first attempt) per schedule: schedule[attempts], the last entry
// repeating. An empty schedule is config.DefaultDelivery's.
func RetryDelay(schedule []time.Duration, attempts int) time.Duration {
	if len(schedule) == 0 {
		schedule = config.DefaultDelivery().Retry
	}
	return schedule[min(max(attempts, 0), len(schedule)-1)]
}

// destGroup is the recipients of one message that share a destination
// domain: one job.
type destGroup struct {
	domain string // lower case
	idx    []int  // indices into Envelope.Recipients / Message.Recipients
	held   string // the domain is held and the message expired: why (the job makes no attempt)
}

// undelivered reports whether a recipient still needs an attempt.
func undelivered(st queue.Status) bool {
	return st == queue.Pending || st == queue.Deferred
}

// destGroups groups the Pending and Deferred recipients of m by their
// lower-cased domain, in the order each domain first appears.
func destGroups(m *queue.Message) []*destGroup {
	var groups []*destGroup
	by := map[string]*destGroup{}
	for i, rc := range m.Envelope.Recipients {
		if i >= len(m.Recipients) || !undelivered(m.Recipients[i].Status) {
			continue
		}
		d := rc.Address.DomainFold()
		g := by[d]
		if g == nil {
			g = &destGroup{domain: d}
			by[d] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	return groups
}

// allFinal reports whether every recipient of m is Delivered or Failed.
func allFinal(m *queue.Message) bool {
	for _, rs := range m.Recipients {
		if undelivered(rs.Status) {
			return false
		}
	}
	return true
}

// selectRoute is the route for domain: the first configured route for
// exactly that domain, else the first "*" route, else SMTP with an MX
// look-up. Transport defaults to "smtp" and TLS to d.TLS (which
// withDefaults sets).
func selectRoute(d config.Delivery, domain string) Route {
	var pick *config.Route
	for i := range d.Routes {
		if envelope.FoldDomain(d.Routes[i].Domain) == envelope.FoldDomain(domain) { // ASCII only: a Kelvin sign is not a "k"
			pick = &d.Routes[i]
			break
		}
	}
	if pick == nil {
		for i := range d.Routes {
			if d.Routes[i].Domain == "*" {
				pick = &d.Routes[i]
				break
			}
		}
	}
	r := Route{Transport: "smtp"}
	if pick != nil {
		r = Route{Transport: pick.Transport, Via: pick.Via, Path: pick.Path, TLS: pick.TLS}
		if a := pick.Auth; a != nil {
			r.Auth = &Credentials{Username: a.Username, Password: a.Password}
		}
	}
	if r.Transport == "" {
		r.Transport = "smtp"
	}
	if r.TLS == "" {
		r.TLS = d.TLS
	}
	return r
}

// postmasterAddress parses Delivery.Postmaster ("user@domain", optionally
// in angle brackets); a bare local part gets host as its domain. "" gives
// the null address.
func postmasterAddress(s, host string) envelope.Address {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" {
		return envelope.Address{}
	}
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return envelope.Address{Local: s, Domain: host}
	}
	return envelope.Address{Local: s[:i], Domain: s[i+1:]}
}
