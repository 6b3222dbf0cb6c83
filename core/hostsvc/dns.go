package hostsvc

import (
	"context"
	"net/netip"

	"github.com/mailgate/gateway/core/resolver"
)

// DNS look-ups through the gateway's resolver, under ctx's deadline. A
// name without records of the type gives no records and no error (TXT,
// PTR, MX); errors are the resolver's (resolver.IsTemporary tells a
// failure worth retrying from a permanent answer such as NXDOMAIN).

// LookupMX returns the MX records of domain by preference (a null MX is
// host ".").
func (sc *Scope) LookupMX(ctx context.Context, domain string) ([]resolver.MX, error) {
	r, err := sc.resolver()
	if err != nil {
		return nil, err
	}
	return r.MX(ctx, domain)
}

// LookupIP returns the A then AAAA addresses of host.
func (sc *Scope) LookupIP(ctx context.Context, host string) ([]string, error) {
	r, err := sc.resolver()
	if err != nil {
		return nil, err
	}
	ips, err := r.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out, nil
}

// LookupTXT returns the TXT records of name, each one's strings joined.
func (sc *Scope) LookupTXT(ctx context.Context, name string) ([]string, error) {
	r, err := sc.resolver()
	if err != nil {
		return nil, err
	}
	return r.TXT(ctx, name)
}

// LookupPTR returns the PTR names of ip; an ip that does not parse is a
// permanent error (resolver.ErrInvalidName).
func (sc *Scope) LookupPTR(ctx context.Context, ip string) ([]string, error) {
	r, err := sc.resolver()
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, &resolver.Error{Name: ip, Type: "PTR", Err: resolver.ErrInvalidName}
	}
	return r.PTR(ctx, addr)
}

func (sc *Scope) resolver() (*resolver.Resolver, error) {
	if sc.svc.resolver == nil {
		return nil, ErrNoResolver
	}
	return sc.svc.resolver, nil
}
