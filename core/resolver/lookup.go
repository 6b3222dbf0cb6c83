package resolver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// result is the outcome of a look-up after CNAMEs are followed.
type result struct {
	name     string   // canonical name: the end of the CNAME chain, fully qualified
	rrs      []dns.RR // records of the asked type at name; shared with the cache, read only
	nxdomain bool     // name does not exist
	secure   bool     // every answer on the way had the AD bit
}

// resolve asks for (name, qtype), following CNAME chains of up to maxCNAME
// links, within one answer or across queries when a server returns a chain
// without the data at its end. NODATA gives a result without records.
//
// The result is secure only if every answer it was built from was: one
// insecure link of a chain makes the whole insecure.
func (r *Resolver) resolve(ctx context.Context, name string, qtype uint16) (result, error) {
	hops := 0
	secure := true
	for {
		e, err := r.query(ctx, name, qtype)
		if err != nil {
			return result{}, err
		}
		secure = secure && e.secure
		target, rrs, n := walk(e.answer, name, qtype)
		hops += n
		if hops > maxCNAME {
			return result{}, &Error{Name: hostName(name), Type: typeString(qtype),
				Err: fmt.Errorf("%w: cname chain longer than %d", ErrTemporary, maxCNAME)}
		}
		switch {
		case len(rrs) > 0:
			return result{name: target, rrs: rrs, secure: secure}, nil
		case e.rcode == dns.RcodeNameError:
			// RFC 6604: the rcode is about the last name of the chain.
			return result{name: target, nxdomain: true, secure: secure}, nil
		case n == 0:
			return result{name: target, secure: secure}, nil // NODATA
		}
		name = target // the chain ends without data: ask for its target
	}
}

// walk follows the CNAME chain from name through answer and returns where it
// ends, the records of type qtype there and the number of CNAMEs followed. It
// stops after maxCNAME+1 links, which resolve reports as a loop.
func walk(answer []dns.RR, name string, qtype uint16) (string, []dns.RR, int) {
	hops := 0
	for {
		var rrs []dns.RR
		var cname string
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				rrs = append(rrs, rr)
			case h.Rrtype == dns.TypeCNAME && cname == "":
				cname = strings.ToLower(rr.(*dns.CNAME).Target)
			}
		}
		if len(rrs) > 0 || cname == "" || qtype == dns.TypeCNAME || hops > maxCNAME {
			return name, rrs, hops
		}
		name = cname
		hops++
	}
}

// query returns the answer to one question from the cache or from the
// servers. Concurrent identical misses share one exchange.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*entry, error) {
	key := cacheKey{name: name, qtype: qtype}
	if e, ok := r.cache.get(key, r.now()); ok {
		return e, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{Name: hostName(name), Type: typeString(qtype), Err: err}
	}
	fetch := func(ctx context.Context) (e *entry, err error) {
		defer func() {
			if p := recover(); p != nil {
				e, err = nil, &Error{Name: hostName(name), Type: typeString(qtype), Err: fmt.Errorf("%w: panic: %v", ErrTemporary, p)}
			}
		}()
		if e, ok := r.cache.get(key, r.now()); ok {
			return e, nil
		}
		e, err = r.exchange(ctx, name, qtype)
		if err == nil {
			r.cache.put(key, e)
		}
		return e, err
	}
	ch := r.flight.DoChan(typeString(qtype)+" "+name, func() (any, error) { return fetch(ctx) })
	select {
	case <-ctx.Done():
		// The shared exchange goes on for the others; it ends with its own
		// leader's context or the attempt timeouts.
		return nil, &Error{Name: hostName(name), Type: typeString(qtype), Err: ctx.Err()}
	case res := <-ch:
		if res.Err != nil && res.Shared && isContextErr(res.Err) && ctx.Err() == nil {
			// Another caller led the exchange and gave up; ours is still wanted.
			return fetch(ctx)
		}
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*entry), nil
	}
}

// ctxErr is ctx.Err(), also reporting a deadline that has passed before the
// context's timer fired: a socket deadline set from it can expire first.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// exchange asks the servers in turn, Attempts rounds, until one gives an
// authoritative answer (NOERROR or NXDOMAIN).
//
// Every query sets the AD bit, which asks a validating server to say
// whether it validated the answer (RFC 6840 §5.7) at no cost in size; TLSA
// queries set DO as well (RFC 3225), because some validating servers
// report AD only to a client that asked for DNSSEC records.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*entry, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype) // sets RD
	m.AuthenticatedData = true
	m.SetEdns0(ednsSize, qtype == dns.TypeTLSA)

	var last error
	n := len(r.servers)
	for i := 0; i < r.attempts*n; i++ {
		server := r.servers[i%n]
		if err := ctxErr(ctx); err != nil {
			return nil, &Error{Name: hostName(name), Type: typeString(qtype), Err: err}
		}
		m.Id = dns.Id()
		resp, err := r.exchangeOne(ctx, m, server)
		if err != nil {
			if cerr := ctxErr(ctx); cerr != nil {
				return nil, &Error{Name: hostName(name), Type: typeString(qtype), Err: cerr}
			}
			last = fmt.Errorf("%s: %v", server, err)
			r.log.DebugContext(ctx, "resolver: query failed", "server", server, "name", name, "type", typeString(qtype), "err", err)
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return newEntry(resp, r.now()), nil
		default:
			last = fmt.Errorf("%s from %s", rcodeString(resp.Rcode), server)
			r.log.DebugContext(ctx, "resolver: server failure", "server", server, "name", name, "type", typeString(qtype), "rcode", rcodeString(resp.Rcode))
		}
	}
	return nil, &Error{Name: hostName(name), Type: typeString(qtype), Err: fmt.Errorf("%w: %v", ErrTemporary, last)}
}

// exchangeOne sends m to server over UDP, and again over TCP if the answer
// is truncated, each within Timeout.
func (r *Resolver) exchangeOne(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	resp, err := r.roundTrip(ctx, r.udp, m, server)
	if resp != nil && resp.Truncated {
		resp, err = r.roundTrip(ctx, r.tcp, m, server)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != m.Question[0].Qtype ||
		!strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) {
		return nil, errors.New("answer for another question")
	}
	if resp.Truncated {
		return nil, errors.New("truncated answer over tcp")
	}
	return resp, nil
}

// roundTrip is one exchange on a fresh connection. Cancelling ctx interrupts
// it at once, not only at the deadline.
func (r *Resolver) roundTrip(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && resp != nil && resp.Truncated && c.Net == "udp" {
		return resp, nil // a truncated answer may not unpack; TCP follows
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func typeString(qtype uint16) string {
	if s, ok := dns.TypeToString[qtype]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", qtype)
}

func rcodeString(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rcode)
}
