package smtp

// This file is the RFC 3461 §4 xtext encoding used by ENVID, ORCPT and
// AUTH= values.

import (
	"fmt"
	"strings"
)

// ErrBadXText is wrapped by DecodeXText errors; it wraps ErrBadParamValue,
// since xtext only ever appears in parameter values.
var ErrBadXText = fmt.Errorf("smtp: bad xtext: %w", ErrBadParamValue)

const upperHex = "0123456789ABCDEF"

// DecodeXText decodes RFC 3461 xtext:
//
//	xtext   = *( xchar / hexchar )
//	xchar   = any ASCII from "!" (33) to "~" (126) except "+" and "="
//	hexchar = "+" 2HEXDIG
//
// Upper- and lower-case hex digits are accepted (RFC 3461 asks senders for
// upper case; ABNF HEXDIG is case-insensitive). The empty string decodes
// to "". Any other byte, a "+" without two hex digits, or "=" is an error
// wrapping ErrBadXText.
func DecodeXText(s string) (string, error) {
	if i := xtextInvalid(s); i >= 0 {
		return "", fmt.Errorf("smtp: bad xtext at offset %d in %q: %w", i, truncate(s), ErrBadXText)
	}
	if strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '+' {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// EncodeXText encodes s as xtext: bytes from "!" to "~" other than "+" and
// "=" stay, every other byte becomes "+" and two upper-case hex digits.
// DecodeXText(EncodeXText(s)) == s for every s.
func EncodeXText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isXChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0x0f])
	}
	return b.String()
}

// ValidXText reports whether s is well-formed xtext (the empty string is).
func ValidXText(s string) bool { return xtextInvalid(s) < 0 }

// xtextInvalid returns the offset of the first malformed byte of s, or -1.
func xtextInvalid(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isXChar(c) {
			continue
		}
		if c != '+' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return i
		}
		i += 2
	}
	return -1
}

func isXChar(c byte) bool { return c >= '!' && c <= '~' && c != '+' && c != '=' }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// truncate shortens client text for error messages.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
