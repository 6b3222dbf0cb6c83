package delivery

// This file holds the engine's pure scheduling rules: the defaults of the
// delivery settings, grouping a message's recipients by destination, route
// selection, the retry back-off and the hop (Received) count.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/queue"
)

// The defaults of config.Delivery, applied by the engine to zero fields so
// that a hand-built Delivery works as well as a loaded one.
const (
	DefaultMaxConnections          = 100
	DefaultMaxConnectionsPerDomain = 20
	DefaultMaxLifetime             = 5 * 24 * time.Hour
	DefaultDelayWarning            = 4 * time.Hour
	// MaxReceived is the most Received header fields a queued message may
	// carry; with more it is taken for a mail loop and fails with 5.4.6.
	MaxReceived = 50
)

// DefaultRetry returns the default waits before retries 1, 2, …; the last
// repeats.
func DefaultRetry() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour}
}

// withDefaults returns d with the defaults of its zero fields filled in.
//
// DelayWarning is the one field whose zero value has a meaning of its own:
// config documents 0 as "never". config.Load always fills Retry, so a
// Delivery with an empty Retry is taken as hand-built (tests, embedding) and
// gets every default, DelayWarning 4h included; in a loaded one 0 keeps
// meaning never. A negative DelayWarning is never in both cases.
func withDefaults(d config.Delivery) config.Delivery {
	handBuilt := len(d.Retry) == 0
	if handBuilt {
		d.Retry = DefaultRetry()
		if d.DelayWarning == 0 {
			d.DelayWarning = DefaultDelayWarning
		}
	}
	if d.MaxConnections <= 0 {
		d.MaxConnections = DefaultMaxConnections
	}
	if d.MaxConnectionsPerDomain <= 0 {
		d.MaxConnectionsPerDomain = DefaultMaxConnectionsPerDomain
	}
	if d.MaxLifetime <= 0 {
		d.MaxLifetime = DefaultMaxLifetime
	}
	if d.TLS == "" {
		d.TLS = "opportunistic"
	}
	return d
}

// RetryDelay is the wait after a message's attempt number attempts (0 for
// the first attempt) per schedule: schedule[attempts], the last entry
// repeating. An empty schedule is DefaultRetry.
func RetryDelay(schedule []time.Duration, attempts int) time.Duration {
	if len(schedule) == 0 {
		schedule = DefaultRetry()
	}
	return schedule[min(max(attempts, 0), len(schedule)-1)]
}

// destGroup is the recipients of one message that share a destination
// domain: one job.
type destGroup struct {
	domain string // lower case
	idx    []int  // indices into Envelope.Recipients / Message.Recipients
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
// look-up. Transport defaults to "smtp" and TLS to d.TLS (itself
// defaulting to "opportunistic").
func selectRoute(d config.Delivery, domain string) Route {
	var pick *config.Route
	for i := range d.Routes {
		if strings.EqualFold(d.Routes[i].Domain, domain) {
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
	}
	if r.Transport == "" {
		r.Transport = "smtp"
	}
	if r.TLS == "" {
		r.TLS = d.TLS
	}
	if r.TLS == "" {
		r.TLS = "opportunistic"
	}
	return r
}

// maxHeaderScan bounds how much of a message's header section
// receivedCount reads.
const maxHeaderScan = 1 << 20

// receivedCount counts the Received header fields of the header section
// at the start of r (case-insensitive, at the start of a line), stopping
// once it passes limit, at the empty line ending the header section, or
// after maxHeaderScan bytes.
func receivedCount(r io.Reader, limit int) (int, error) {
	br := bufio.NewReaderSize(r, 4096)
	n, read, atStart := 0, 0, true
	for read < maxHeaderScan {
		chunk, err := br.ReadSlice('\n')
		read += len(chunk)
		if atStart && len(chunk) > 0 {
			if len(bytes.TrimRight(chunk, "\r\n")) == 0 && bytes.HasSuffix(chunk, []byte("\n")) {
				return n, nil // the empty line: end of the header section
			}
			if len(chunk) >= len("received:") && strings.EqualFold(string(chunk[:len("received:")]), "received:") {
				if n++; n > limit {
					return n, nil
				}
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			atStart = false // the rest of a long line follows
		case errors.Is(err, io.EOF):
			return n, nil
		case err != nil:
			return n, err
		default:
			atStart = true
		}
	}
	return n, nil
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

// sameAddress compares two addresses, the domain case-insensitively.
func sameAddress(a, b envelope.Address) bool {
	return a.Local == b.Local && a.DomainFold() == b.DomainFold()
}
