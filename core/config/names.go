package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mailgate/gateway/core/envelope"
)

// normalizeDomain lower-cases a domain name, strips one trailing dot and
// checks that it is a valid host name (RFC 1035 §2.3.1 letters, digits and
// hyphens, as relaxed by RFC 1123 §2.1): labels of 1 to 63 characters,
// no hyphen at either end, 253 characters in all. Internationalized names
// must be given in their A-label (xn--) form.
func normalizeDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	if d == "" {
		return "", errors.New("empty")
	}
	if len(d) > 253 {
		return "", errors.New("longer than 253 characters")
	}
	if _, err := netip.ParseAddr(d); err == nil {
		return "", errors.New("an IP address, not a domain name")
	}
	for label := range strings.SplitSeq(d, ".") {
		switch {
		case label == "":
			return "", errors.New("has an empty label")
		case len(label) > 63:
			return "", fmt.Errorf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c >= 0x80 {
					return "", errors.New("not ASCII: write internationalized names in their xn-- form")
				}
				return "", fmt.Errorf("label %q has the character %q; only letters, digits and hyphens are allowed", label, c)
			}
		}
	}
	return d, nil
}

// checkHostPort checks a "host:port" address with a numeric port. The host
// may be empty (every interface) only when listening; port 0 (any free
// port) is allowed only when listening.
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`want host:port, as in "127.0.0.1:25" or "[::1]:25"`)
	}
	if host == "" && !listen {
		return errors.New("the host is empty")
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			if _, err := normalizeDomain(host); err != nil {
				return fmt.Errorf("host %q is neither an IP address nor a domain name", host)
			}
		}
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if n == 0 && !listen {
		return errors.New("port 0 is only for listening")
	}
	return nil
}

// listenKey is the form of a listening address that two listeners must not
// share: the host as written (IPs normalized) and the port as a number.
func listenKey(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s
	}
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.String()
	}
	n, _ := strconv.ParseUint(port, 10, 16)
	return net.JoinHostPort(strings.ToLower(host), strconv.FormatUint(n, 10))
}

// parseNetwork parses a CIDR prefix, or a bare IP address meaning that one
// address (/32 or /128). Host bits are cleared: "10.1.2.3/8" is 10.0.0.0/8.
func parseNetwork(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New(`want a CIDR prefix or an IP address, as in "192.0.2.0/24", "2001:db8::/32" or "192.0.2.1"`)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, errors.New(`want a CIDR prefix or an IP address, as in "192.0.2.0/24", "2001:db8::/32" or "192.0.2.1"`)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// resolverAddress checks the address of a DNS server, "ip:port" or a bare
// IP address (port 53), and returns it as ip:port. The host must be an IP
// address: the resolver is what finds addresses by name.
func resolverAddress(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), defaultResolverPort), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", errors.New(`want an IP address or ip:port, as in "192.0.2.53", "127.0.0.1:5353" or "[2001:db8::53]:53"`)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("host %q is not an IP address", host)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(a.String(), strconv.FormatUint(n, 10)), nil
}

// normalizeMailbox checks an address local@domain as configuration gives
// it (no angle brackets): ASCII, an RFC 5321 local part and a domain name
// (not an address literal), which is lower-cased.
func normalizeMailbox(s string) (string, error) {
	for _, c := range []byte(s) {
		if c >= 0x80 {
			return "", errors.New("not ASCII")
		}
	}
	a, err := envelope.ParseAddress(s)
	if err != nil {
		var aerr *envelope.AddressError
		if errors.As(err, &aerr) {
			return "", errors.New(aerr.Reason)
		}
		return "", err
	}
	if strings.HasPrefix(a.Domain, "[") {
		return "", errors.New("the domain is an address literal; want a domain name")
	}
	dom, err := normalizeDomain(a.Domain)
	if err != nil {
		return "", fmt.Errorf("want local@domain with a domain name: %w", err)
	}
	return a.Local + "@" + dom, nil
}
