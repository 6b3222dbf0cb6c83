// Package expn decides, for the shipped plugins that answer EXPN and VRFY
// (aliases, lists), which clients may ask and which address a command
// names. The rule is the one scripts/aliases.lua and scripts/lists.lua
// keep: the answers are off unless the expn setting is on, and then they
// go to trusted clients only, those that authenticated and those in
// expn_networks; every other client gets the server's own answer (502 to
// EXPN, 252 to VRFY), as if the plugin were not there. Expanding a list
// or an alias to anyone would hand out its members' addresses.
package expn

import (
	"net/netip"
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// Policy is who may use EXPN and VRFY. The zero Policy allows no one.
type Policy struct {
	enabled  bool
	networks []netip.Prefix
}

// Fields are the settings Parse reads, for a plugin's schema; answers
// says what the plugin answers, e.g. "EXPN of an alias with its targets".
func Fields(answers string) []sdk.ConfigField {
	return []sdk.ConfigField{
		{Name: "expn", Type: "bool", Default: false,
			Description: "Answer " + answers + ", to trusted clients only: authenticated ones and those in expn_networks."},
		{Name: "expn_networks", Type: "list(string)",
			Description: "Client networks (CIDR, or a single IP) trusted with EXPN and VRFY besides authenticated clients."},
	}
}

// Parse reads the settings of Fields from cfg; a network that does not
// parse is added to errs.
func Parse(cfg sdk.Config, errs *sdk.ConfigErrors) Policy {
	p := Policy{enabled: cfg.Bool("expn")}
	for _, s := range cfg.List("expn_networks") {
		n, err := prefix(s)
		if err != nil {
			errs.Add("expn_networks", "%q is not a network such as \"10.0.0.0/8\" or an IP", s)
			continue
		}
		p.networks = append(p.networks, n)
	}
	return p
}

// prefix parses a CIDR, or a single IP as a /32 or /128.
func prefix(s string) (netip.Prefix, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

// Allows reports whether the client of session s may have its EXPN or
// VRFY answered.
func (p Policy) Allows(s *sdk.Session) bool {
	if !p.enabled || s == nil {
		return false
	}
	if s.AuthUser != "" {
		return true
	}
	ip, err := netip.ParseAddr(s.ClientIP)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, n := range p.networks {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Address returns the address an EXPN or VRFY argument names: what is
// between < and > if the argument has them ("Team <team@example.test>"),
// else the argument without surrounding blanks. A name without @ gets
// domain, when domain is not "".
func Address(arg, domain string) string {
	a := strings.TrimSpace(arg)
	if i := strings.IndexByte(a, '<'); i >= 0 {
		if j := strings.IndexByte(a[i:], '>'); j >= 0 {
			a = a[i+1 : i+j]
		}
	}
	if a != "" && domain != "" && !strings.Contains(a, "@") {
		a += "@" + domain
	}
	return a
}
