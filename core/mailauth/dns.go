package mailauth

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/mailgate/gateway/core/resolver"
)

// dnsError turns a core/resolver error into the *net.DNSError the SPF and
// DKIM libraries classify: NXDOMAIN and no address are "not found", a
// temporary failure is temporary, anything else is permanent.
func dnsError(name string, err error) error {
	if err == nil {
		return nil
	}
	e := &net.DNSError{Err: err.Error(), Name: name}
	switch {
	case errors.Is(err, resolver.ErrNotFound), errors.Is(err, resolver.ErrNoAddress):
		e.IsNotFound = true
	case resolver.IsTemporary(err):
		e.IsTemporary = true
	}
	return e
}

// spfDNS is core/resolver as blitiri.com.ar/go/spf's DNSResolver.
type spfDNS struct{ r *resolver.Resolver }

func (d spfDNS) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, err := d.r.TXT(ctx, name)
	return txts, dnsError(name, err)
}

func (d spfDNS) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := d.r.MX(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	out := make([]*net.MX, 0, len(mxs))
	for _, m := range mxs {
		if m.Host != "." {
			out = append(out, &net.MX{Host: m.Host, Pref: m.Preference})
		}
	}
	return out, nil
}

func (d spfDNS) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := d.r.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip.AsSlice()}
	}
	return out, nil
}

func (d spfDNS) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: err.Error(), Name: addr}
	}
	names, err := d.r.PTR(ctx, ip)
	return names, dnsError(addr, err)
}

// lookupTXT is the resolver's TXT look-up with a context, as the DKIM
// library's LookupTXT (which takes none).
func lookupTXT(ctx context.Context, r *resolver.Resolver) func(string) ([]string, error) {
	return func(name string) ([]string, error) {
		txts, err := r.TXT(ctx, name)
		return txts, dnsError(name, err)
	}
}
