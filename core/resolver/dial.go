package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// DialFunc returns a dial function for net/http's Transport.DialContext
// that looks host names up with r, never the system resolver, and tries
// each address in turn (an IP address is dialled as it is). port, when
// not 0, replaces the port of every address dialled: the test seam of the
// HTTPS clients (MTA-STS policies, TLS-RPT reports) that use it.
func (r *Resolver) DialFunc(port int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if port != 0 {
			p = strconv.Itoa(port)
		}
		ips := []netip.Addr{}
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = append(ips, ip)
		} else if ips, err = r.LookupIP(ctx, host); err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("resolver: %s: no address", host)
		}
		var d net.Dialer
		var errs []error
		for _, ip := range ips {
			conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), p))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
}
