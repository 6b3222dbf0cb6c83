package envelope

import "errors"

// ErrBadAddress is wrapped by every ParsePath and ParseAddress error.
var ErrBadAddress = errors.New("envelope: bad address")

// ParsePath parses an RFC 5321 path in angle brackets: "<>" (null, only if
// allowNull), "<local@domain>", "<\"quoted local\"@domain>", an address
// literal "<user@[192.0.2.1]>" or "<user@[IPv6:::1]>", and a source route
// "<@a,@b:user@domain>" (route discarded). utf8 allows UTF-8 in the local
// part and domain (SMTPUTF8); without it only ASCII is allowed. It returns
// the address and the rest of the string after ">". Local part at most 64
// octets, domain at most 255.
func ParsePath(s string, allowNull, utf8 bool) (Address, string, error) { panic("todo") }

// ParseAddress parses a bare "local@domain" (no angle brackets), as in
// configuration and headers.
func ParseAddress(s string) (Address, error) { panic("todo") }
