// Package srs is the Sender Rewriting Scheme (SRS0) of the shipped aliases:
// plugins/aliases writes and reads the addresses exactly as
// scripts/aliases.lua does, so an address either of them made is valid
// for the other, under the same secret.
//
// The format is SRS0=HHHH=TT=domain=local@srs_domain: TT is the day
// number (Unix time / 86400) modulo 1024 in base32, two characters; HHHH
// a keyed hash of TT, domain and local part. Lua has no HMAC, so the hash
// is a keyed polynomial hash modulo a prime below 2^24 over the secret,
// the lower-cased fields and the secret again, truncated to 20 bits (four
// base32 characters). It is NOT cryptographic: it stops casual forgery of
// bounce addresses (one chance in a million per guess without the
// secret), not a determined attacker who collects many of our addresses;
// keep the maximum age short.
package srs

import (
	"errors"
	"strings"
	"time"
)

// Errors of Reverse.
var (
	ErrNotSRS  = errors.New("srs: not an SRS0 address of ours")
	ErrBadHash = errors.New("srs: bad hash")
	ErrExpired = errors.New("srs: expired")
)

// Rewriter writes and reads the SRS0 addresses of one domain.
type Rewriter struct {
	Domain string // srs_domain, lower case
	Secret string // keys the hash; must not be empty
	MaxAge int    // days an address stays valid
}

// Forward returns the SRS0 address for the sender local@domain at now.
func (r Rewriter) Forward(local, domain string, now time.Time) string {
	tt := base32(day(now)%1024, 2)
	return "SRS0=" + r.hash(tt, domain, local) + "=" + tt + "=" + domain + "=" + local + "@" + r.Domain
}

// Reverse returns the original sender of addr, an SRS0 address of r's
// domain made no more than MaxAge days before now. It fails with
// ErrNotSRS for any other address (in another domain, or not in the SRS0
// format), ErrBadHash when the hash does not match, ErrExpired when the
// address is too old.
func (r Rewriter) Reverse(addr string, now time.Time) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], r.Domain) {
		return "", ErrNotSRS
	}
	hh, tt, domain, local, ok := fields(addr[:at])
	if !ok {
		return "", ErrNotSRS
	}
	if strings.ToUpper(hh) != r.hash(tt, domain, local) {
		return "", ErrBadHash
	}
	t, ok := base32Value(tt)
	if !ok || len(tt) != 2 || mod(day(now)-t, 1024) > int64(r.MaxAge) {
		return "", ErrExpired
	}
	return local + "@" + domain, nil
}

// fields splits the local part "SRS0=HH=TT=domain=local" (the separator
// after SRS0 may also be + or -, the tag in any case); the original local
// part may hold "=" itself.
func fields(lp string) (hh, tt, domain, local string, ok bool) {
	if len(lp) < 5 || !strings.EqualFold(lp[:4], "SRS0") || !strings.ContainsRune("=+-", rune(lp[4])) {
		return "", "", "", "", false
	}
	parts := strings.SplitN(lp[5:], "=", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return "", "", "", "", false
	}
	return parts[0], parts[1], parts[2], parts[3], true
}

// prime is below 2^24, so that h*257 + 255 stays exact in a Lua number.
const prime = 16777213

// hash is the keyed hash described in the package comment.
func (r Rewriter) hash(fields ...string) string {
	data := r.Secret + "\x00" + strings.ToLower(strings.Join(fields, "\x00")) + "\x00" + r.Secret
	h := int64(5381)
	for i := 0; i < len(data); i++ {
		h = (h*257 + int64(data[i])) % prime
	}
	return base32(h%(1<<20), 4)
}

func day(t time.Time) int64 { return t.Unix() / 86400 }

// mod is the modulo whose result has the sign of m, as Lua's % is.
func mod(a, m int64) int64 { return (a%m + m) % m }

const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// base32 writes n in width base32 digits, the high ones first.
func base32(n int64, width int) string {
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = digits[n%32]
		n /= 32
	}
	return string(b)
}

// base32Value reads base32 digits in any case.
func base32Value(s string) (int64, bool) {
	var n int64
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(digits, upper(s[i]))
		if d < 0 {
			return 0, false
		}
		n = n*32 + int64(d)
	}
	return n, true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
