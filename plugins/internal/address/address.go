// Package address checks and splits the mail addresses that the shipped
// plugins read from their files, their config blocks and SMTP commands.
// It is deliberately lenient: it refuses what cannot be an address in a
// list or alias file (white space, separators, brackets), not everything
// RFC 5321 refuses; the core checks what goes on the wire.
package address

import (
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// ValidDomain reports whether s looks like a domain name: dot-separated
// labels of 1 to 63 bytes, at most 255 bytes in all, without white space,
// control characters or the characters that separate or quote addresses
// (@ , " \ < >). UTF-8 labels pass.
func ValidDomain(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || strings.ContainsFunc(label, badDomainRune) {
			return false
		}
	}
	return true
}

func badDomainRune(r rune) bool {
	return r <= ' ' || r == 0x7f || strings.ContainsRune(`@,"\<>`, r)
}

// Cut splits an address at its last @; ok is false when it has none (the
// whole of addr is then the local part).
func Cut(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return addr, "", false
	}
	return addr[:i], addr[i+1:], true
}

// Split is Cut into an sdk.Address.
func Split(addr string) sdk.Address {
	local, domain, _ := Cut(addr)
	return sdk.Address{Local: local, Domain: domain}
}
