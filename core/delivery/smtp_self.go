package delivery

// This file is the SMTP transport's self-recognition (RFC 5321 §5.1): an
// MTA that finds itself among a domain's exchangers drops itself and every
// less or equally preferred one, so that a backup MX does not deliver to
// itself in a loop.

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// dropSelf removes from hosts (in preference order) the first host that is
// this gateway and every host from its preference on. self reports whether
// one was found: with no host left, the domain needs a route.
func (s *SMTP) dropSelf(ctx context.Context, hosts []smtpHost) (kept []smtpHost, self bool) {
	if s.opt.Self == nil && s.opt.Hostname == "" {
		return hosts, false
	}
	var ours []netip.AddrPort
	if s.opt.Self != nil {
		ours = s.opt.Self()
	}
	for i, h := range hosts {
		if !s.isSelf(ctx, h, ours) {
			continue
		}
		kept = hosts[:i]
		for len(kept) > 0 && kept[len(kept)-1].pref >= h.pref {
			kept = kept[:len(kept)-1]
		}
		return kept, true
	}
	return hosts, false
}

// isSelf reports whether h is this gateway: its name is the hostname, or
// one of its addresses at h's port is where the gateway receives mail.
func (s *SMTP) isSelf(ctx context.Context, h smtpHost, ours []netip.AddrPort) bool {
	if s.opt.Hostname != "" && strings.EqualFold(h.name, s.opt.Hostname) {
		return true
	}
	if len(ours) == 0 {
		return false
	}
	addrs, err := s.addrs(ctx, h)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		for _, o := range ours {
			if o.Port() != 0 && int(o.Port()) != h.port {
				continue
			}
			if o.Addr() == a.Unmap() || o.Addr().IsUnspecified() && s.isLocalAddr(a.Unmap()) {
				return true
			}
		}
	}
	return false
}

// isLocalAddr reports whether a is a loopback address or one of the
// machine's interfaces' (what a listener on 0.0.0.0 or [::] receives on).
func (s *SMTP) isLocalAddr(a netip.Addr) bool {
	return a.IsLoopback() || slices.Contains(s.localAddrs(), a)
}

// interfaceAddrs returns the addresses of the machine's interfaces.
func interfaceAddrs() []netip.Addr {
	var out []netip.Addr
	ifAddrs, _ := net.InterfaceAddrs()
	for _, ia := range ifAddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}
