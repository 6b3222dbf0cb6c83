package envelope

// This file parses RFC 5321 §4.1.2 paths and mailboxes, with the RFC 6531
// (SMTPUTF8) extensions when asked for.

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// ErrBadAddress is wrapped by every ParsePath and ParseAddress error.
var ErrBadAddress = errors.New("envelope: bad address")

// Length limits of RFC 5321 §4.5.3.1.
const (
	MaxLocalLength  = 64  // octets of a local part, quotes included
	MaxDomainLength = 255 // octets of a domain, brackets of a literal included
	MaxLabelLength  = 63  // octets of one domain label
)

// AddressError is the error ParsePath and ParseAddress return. It wraps
// ErrBadAddress; Reason says what is wrong, for logs.
type AddressError struct {
	Input  string // the text given to the parser
	Reason string // e.g. "local part longer than 64 octets"
}

func (e *AddressError) Error() string {
	in := e.Input
	if len(in) > 80 {
		in = in[:80] + "..."
	}
	return fmt.Sprintf("envelope: bad address %q: %s", in, e.Reason)
}

// Unwrap returns ErrBadAddress.
func (e *AddressError) Unwrap() error { return ErrBadAddress }

// ParsePath parses an RFC 5321 path in angle brackets: "<>" (null, only if
// allowNull), "<local@domain>", "<\"quoted local\"@domain>", an address
// literal "<user@[192.0.2.1]>" or "<user@[IPv6:::1]>", and a source route
// "<@a,@b:user@domain>" (route discarded). utf8 allows UTF-8 in the local
// part and domain (SMTPUTF8); without it only ASCII is allowed. It returns
// the address and the rest of the string after ">". Local part at most 64
// octets, domain at most 255.
//
// Details: the path must start with "<" (no leading space, no bare
// address); nothing may stand between the brackets and the address
// (no spaces); domains are RFC 5321 names (labels of letters, digits and
// inner hyphens, at most 63 octets, no trailing dot) and, with utf8, labels
// may also hold any valid UTF-8 non-ASCII character (no IDNA mapping is
// done). Address literals are an IPv4 dotted quad or "IPv6:" (any case)
// and an IPv6 address without zone, both as accepted by net/netip; general
// address literals ("[tag:...]") are rejected. Route domains are checked
// like domains but may not be literals. The returned Address keeps the text
// as received: quotes of a quoted local part, the brackets of a literal.
func ParsePath(s string, allowNull, utf8 bool) (Address, string, error) {
	if !strings.HasPrefix(s, "<") {
		return Address{}, "", badAddress(s, `path does not start with "<"`)
	}
	i := 1
	if strings.HasPrefix(s[i:], ">") {
		if !allowNull {
			return Address{}, "", badAddress(s, "null path not allowed here")
		}
		return Address{}, s[2:], nil
	}
	if i < len(s) && s[i] == '@' {
		// A-d-l = At-domain *( "," At-domain ) ":"
		for {
			i++ // the "@"
			end := scanDomainName(s, i)
			if reason := checkDomainName(s[i:end], utf8); reason != "" {
				return Address{}, "", badAddress(s, "source route: "+reason)
			}
			i = end
			if i < len(s) && s[i] == ',' && i+1 < len(s) && s[i+1] == '@' {
				i++
				continue
			}
			if i < len(s) && s[i] == ':' {
				i++
				break
			}
			return Address{}, "", badAddress(s, "malformed source route")
		}
	}
	a, end, reason := parseMailbox(s, i, utf8)
	if reason != "" {
		return Address{}, "", badAddress(s, reason)
	}
	if end >= len(s) || s[end] != '>' {
		return Address{}, "", badAddress(s, `path does not end with ">"`)
	}
	return a, s[end+1:], nil
}

// ParseAddress parses a bare "local@domain" (no angle brackets), as in
// configuration and headers. UTF-8 (valid, as with SMTPUTF8) is allowed;
// callers that need ASCII check for it. The empty string is an error.
func ParseAddress(s string) (Address, error) {
	a, end, reason := parseMailbox(s, 0, true)
	if reason == "" && end != len(s) {
		reason = "unexpected text after the domain"
	}
	if reason != "" {
		return Address{}, badAddress(s, reason)
	}
	return a, nil
}

// ValidHost reports whether s is what RFC 5321 §4.1.1.1 allows after
// EHLO and HELO: a Domain in ASCII (no trailing dot, at most 255 octets)
// or an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]").
func ValidHost(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return checkAddressLiteral(s) == ""
	}
	return scanDomainName(s, 0) == len(s) && checkDomainName(s, false) == ""
}

func badAddress(s, reason string) error { return &AddressError{Input: s, Reason: reason} }

// parseMailbox parses Local-part "@" ( Domain / address-literal ) starting
// at s[i]. It returns the address, the index after it and, on failure, a
// reason.
func parseMailbox(s string, i int, utf8 bool) (Address, int, string) {
	start := i
	var reason string
	if i < len(s) && s[i] == '"' {
		i, reason = scanQuotedString(s, i, utf8)
	} else {
		i, reason = scanDotString(s, i, utf8)
	}
	if reason != "" {
		return Address{}, 0, reason
	}
	local := s[start:i]
	if len(local) > MaxLocalLength {
		return Address{}, 0, fmt.Sprintf("local part longer than %d octets", MaxLocalLength)
	}
	if i >= len(s) || s[i] != '@' {
		return Address{}, 0, `missing "@" after the local part`
	}
	i++
	start = i
	if i < len(s) && s[i] == '[' {
		end := strings.IndexByte(s[i:], ']')
		if end < 0 {
			return Address{}, 0, `address literal without "]"`
		}
		i += end + 1
		if reason := checkAddressLiteral(s[start:i]); reason != "" {
			return Address{}, 0, reason
		}
	} else {
		i = scanDomainName(s, i)
		if reason := checkDomainName(s[start:i], utf8); reason != "" {
			return Address{}, 0, reason
		}
	}
	if i-start > MaxDomainLength {
		return Address{}, 0, fmt.Sprintf("domain longer than %d octets", MaxDomainLength)
	}
	return Address{Local: local, Domain: s[start:i]}, i, ""
}

// isAtext reports an RFC 5322 atext character (ASCII only).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// scanNonASCII checks the UTF-8 sequence at s[i] (s[i] >= 0x80) and returns
// its length, or a reason.
func scanNonASCII(s string, i int, allow bool) (int, string) {
	if !allow {
		return 0, "non-ASCII character without SMTPUTF8"
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return 0, "invalid UTF-8"
	}
	return size, ""
}

// scanDotString scans Dot-string = Atom *("." Atom) from s[i].
func scanDotString(s string, i int, utf8 bool) (int, string) {
	start, atomStart := i, i
	for i < len(s) {
		c := s[i]
		switch {
		case isAtext(c):
			i++
		case c >= 0x80:
			n, reason := scanNonASCII(s, i, utf8)
			if reason != "" {
				return 0, "local part: " + reason
			}
			i += n
		case c == '.':
			if i == atomStart {
				return 0, "local part: empty atom (leading or double dot)"
			}
			i++
			atomStart = i
		default:
			return endDotString(i, start, atomStart)
		}
	}
	return endDotString(i, start, atomStart)
}

func endDotString(i, start, atomStart int) (int, string) {
	switch {
	case i == start:
		return 0, "empty local part"
	case i == atomStart:
		return 0, "local part ends with a dot"
	}
	return i, ""
}

// scanQuotedString scans Quoted-string = DQUOTE *QcontentSMTP DQUOTE from
// s[i] (the opening quote).
func scanQuotedString(s string, i int, utf8 bool) (int, string) {
	i++
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return i + 1, ""
		case c == '\\':
			// quoted-pairSMTP = %d92 %d32-126
			if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
				return 0, "local part: bad quoted pair"
			}
			i += 2
		case c >= 32 && c <= 126:
			i++ // qtextSMTP: %d32-33 / %d35-91 / %d93-126
		case c >= 0x80:
			n, reason := scanNonASCII(s, i, utf8)
			if reason != "" {
				return 0, "local part: " + reason
			}
			i += n
		default:
			return 0, "local part: control character in quoted string"
		}
	}
	return 0, "local part: unterminated quoted string"
}

// scanDomainName returns the index after the run of characters that may
// appear in a domain name (letters, digits, "-", ".", non-ASCII).
func scanDomainName(s string, i int) int {
	for i < len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c >= 0x80 {
			i++
			continue
		}
		break
	}
	return i
}

// checkDomainName checks Domain = sub-domain *("." sub-domain), with
// sub-domain = Let-dig [Ldh-str], or a U-label when utf8.
func checkDomainName(d string, utf8 bool) string {
	if d == "" {
		return "empty domain"
	}
	if len(d) > MaxDomainLength {
		return fmt.Sprintf("domain longer than %d octets", MaxDomainLength)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return "domain: empty label"
		}
		if len(label) > MaxLabelLength {
			return fmt.Sprintf("domain: label longer than %d octets", MaxLabelLength)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "domain: label starts or ends with a hyphen"
		}
		for i := 0; i < len(label); {
			if label[i] < 0x80 {
				i++ // scanDomainName let only letters, digits and "-" through
				continue
			}
			n, reason := scanNonASCII(label, i, utf8)
			if reason != "" {
				return "domain: " + reason
			}
			i += n
		}
	}
	return ""
}

// checkAddressLiteral checks "[" ( IPv4 / "IPv6:" IPv6 ) "]".
func checkAddressLiteral(lit string) string {
	inner := lit[1 : len(lit)-1]
	if len(inner) >= 5 && strings.EqualFold(inner[:5], "IPv6:") {
		ip, err := netip.ParseAddr(inner[5:])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "bad IPv6 address literal"
		}
		return ""
	}
	if strings.IndexByte(inner, ':') >= 0 {
		return "unsupported address literal"
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return "bad IPv4 address literal"
	}
	return ""
}
