// Package dane authenticates an SMTP server's TLS certificate with its
// DNSSEC-validated TLSA records, as RFC 7672 (SMTP security via
// opportunistic DANE TLS) applies RFC 6698 and RFC 7671 to SMTP. It owns
// whether DANE applies to an MX host (Lookup, RFC 7672 §2.2), which records
// SMTP may use (Usable, §3.1), whether a server's chain matches them
// (Verify, §3.1.1, §3.1.2, §3.2), the tls.Config that makes a handshake
// check them (Config), and the RFC 8460 result type of a failure
// (FailureType). Dialing, STARTTLS and what a failure does to the mail
// are the SMTP transport's.
//
// The look-ups are core/resolver's (LookupIPSecure, TLSA), whose secure
// flag is the AD bit of a validating resolver that the gateway trusts.
// Lookup makes RFC 7672 §2.2's decision for one MX host from them: no
// DANE unless its addresses and its TLSA answer are both validated; usable
// records make TLS mandatory and Verify the authentication (LevelVerify);
// validated records of which none is usable still make TLS mandatory,
// without authentication, as Postfix does (LevelEncrypt); a failed
// look-up (SERVFAIL, which is also how a bogus answer shows) is an error,
// and the host is not used without TLS because of it.
package dane

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mailgate/gateway/core/resolver"
)

// TLSA parameters (RFC 6698 §2.1, RFC 7218 names).
const (
	UsagePKIXTA uint8 = 0 // unusable for SMTP (RFC 7672 §3.1.3)
	UsagePKIXEE uint8 = 1 // unusable for SMTP (RFC 7672 §3.1.3)
	UsageDANETA uint8 = 2
	UsageDANEEE uint8 = 3

	SelectorCert uint8 = 0 // the full certificate
	SelectorSPKI uint8 = 1 // its SubjectPublicKeyInfo

	MatchFull   uint8 = 0
	MatchSHA256 uint8 = 1
	MatchSHA512 uint8 = 2
)

// Errors of Verify; a returned error wraps one of them (errors.Is), and
// FailureType names its RFC 8460 result type.
var (
	// ErrNoCertificate: the server sent no certificate.
	ErrNoCertificate = errors.New("dane: server sent no certificate")
	// ErrNoUsable: none of the TLSA records is usable for SMTP.
	ErrNoUsable = errors.New("dane: no usable TLSA record")
	// ErrNoMatch: no usable record matches the server's chain.
	ErrNoMatch = errors.New("dane: no TLSA record matches the server's certificate chain")
	// ErrNotTrusted: a DANE-TA record matched, but the leaf does not chain to it.
	ErrNotTrusted = errors.New("dane: certificate does not chain to the TLSA trust anchor")
	// ErrExpired: a DANE-TA record matched, but a certificate of the chain
	// is expired or not yet valid.
	ErrExpired = errors.New("dane: certificate expired or not yet valid")
	// ErrHostMismatch: a DANE-TA record matched, but the leaf names none of
	// the reference identifiers.
	ErrHostMismatch = errors.New("dane: certificate does not name the host")
	// ErrRequired is for the caller that requires DANE for a host that has no
	// DNSSEC-validated TLSA records; Verify does not return it.
	ErrRequired = errors.New("dane: required, but the host has no DNSSEC-validated TLSA records")
)

// FailureType returns the RFC 8460 §4.3 result type of err: of Verify's
// errors, of ErrRequired, and "dnssec-invalid" for a failed DNS look-up
// (a resolver error that is not a permanent answer). Anything else is
// "validation-failure", and nil is "".
func FailureType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrNoUsable), errors.Is(err, ErrNoMatch):
		return "tlsa-invalid"
	case errors.Is(err, ErrRequired):
		return "dane-required"
	case errors.Is(err, ErrHostMismatch):
		return "certificate-host-mismatch"
	case errors.Is(err, ErrExpired):
		return "certificate-expired"
	case errors.Is(err, ErrNotTrusted):
		return "certificate-not-trusted"
	}
	var rerr *resolver.Error
	if errors.As(err, &rerr) && resolver.IsTemporary(err) {
		return "dnssec-invalid"
	}
	return "validation-failure"
}

// Usable keeps the records RFC 7672 §3.1 lets SMTP use: DANE-EE(3) and
// DANE-TA(2) with selector 0/1 and matching type 0/1/2. A record whose data
// cannot be what it claims (a digest of the wrong length, empty data) is
// malformed, so unusable, and left out too.
func Usable(recs []resolver.TLSA) []resolver.TLSA {
	var out []resolver.TLSA
	for _, r := range recs {
		if usable(r) {
			out = append(out, r)
		}
	}
	return out
}

func usable(r resolver.TLSA) bool {
	if r.Usage != UsageDANETA && r.Usage != UsageDANEEE {
		return false
	}
	if r.Selector != SelectorCert && r.Selector != SelectorSPKI {
		return false
	}
	switch r.MatchingType {
	case MatchFull:
		return len(r.Data) > 0
	case MatchSHA256:
		return len(r.Data) == sha256.Size
	case MatchSHA512:
		return len(r.Data) == sha512.Size
	}
	return false
}

// Record returns the TLSA record of cert with the given parameters: what
// an operator publishes for it, and what Verify compares with.
func Record(usage, selector, matchingType uint8, cert *x509.Certificate) resolver.TLSA {
	data := cert.Raw
	if selector == SelectorSPKI {
		data = cert.RawSubjectPublicKeyInfo
	}
	switch matchingType {
	case MatchSHA256:
		sum := sha256.Sum256(data)
		data = sum[:]
	case MatchSHA512:
		sum := sha512.Sum512(data)
		data = sum[:]
	default:
		data = slices.Clone(data)
	}
	return resolver.TLSA{Usage: usage, Selector: selector, MatchingType: matchingType, Data: data}
}

func matches(r resolver.TLSA, cert *x509.Certificate) bool {
	return bytes.Equal(Record(r.Usage, r.Selector, r.MatchingType, cert).Data, r.Data)
}

// Verify checks a server's chain (leaf first, as tls.ConnectionState's
// PeerCertificates) against recs; unusable records are ignored.
//
// A DANE-EE record matching the leaf is enough: no name, no dates (RFC 7672
// §3.1.1, §3.2.1). A DANE-TA record must match a certificate of the chain,
// or, for a full SubjectPublicKeyInfo (2 1 0), may be a bare key that signed
// one (§3.1.2); the leaf must then chain to that trust anchor through the
// chain's certificates with valid dates, and name one of names (the
// reference identifiers of §3.2: the MX host name, and what else the
// caller trusts; wildcards as RFC 6125 allows). Where the SHA2-512 and
// SHA2-256 of one usage and selector are both published, only SHA2-512
// counts (digest agility, RFC 7671 §9).
func Verify(chain []*x509.Certificate, recs []resolver.TLSA, names []string, now time.Time) error {
	if len(chain) == 0 || chain[0] == nil {
		return ErrNoCertificate
	}
	recs = strongest(Usable(recs))
	if len(recs) == 0 {
		return ErrNoUsable
	}
	for _, r := range recs {
		if r.Usage == UsageDANEEE && matches(r, chain[0]) {
			return nil
		}
	}
	var taErr error
	for _, r := range recs {
		if r.Usage != UsageDANETA {
			continue
		}
		anchor := trustAnchor(r, chain)
		if anchor == nil {
			continue
		}
		err := verifyChain(anchor, chain, names, now)
		if err == nil {
			return nil
		}
		taErr = cmpErr(taErr, err)
	}
	if taErr != nil {
		return taErr
	}
	return ErrNoMatch
}

// cmpErr returns the first non-nil error.
func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// strongest drops the SHA2-256 records of a usage and selector that also
// has SHA2-512 ones.
func strongest(recs []resolver.TLSA) []resolver.TLSA {
	type key struct{ usage, selector uint8 }
	has512 := make(map[key]bool)
	for _, r := range recs {
		if r.MatchingType == MatchSHA512 {
			has512[key{r.Usage, r.Selector}] = true
		}
	}
	return slices.DeleteFunc(slices.Clone(recs), func(r resolver.TLSA) bool {
		return r.MatchingType == MatchSHA256 && has512[key{r.Usage, r.Selector}]
	})
}

// trustAnchor returns the certificate a DANE-TA record designates: one of
// the chain's, or for a bare key (2 1 0) a stand-in certificate that holds
// the key under the name of the issuer of the chain's certificate it
// signed. nil when the record designates none.
func trustAnchor(r resolver.TLSA, chain []*x509.Certificate) *x509.Certificate {
	for _, c := range chain {
		if c != nil && matches(r, c) {
			return c
		}
	}
	if r.Selector != SelectorSPKI || r.MatchingType != MatchFull {
		return nil
	}
	key, err := x509.ParsePKIXPublicKey(r.Data)
	if err != nil {
		return nil
	}
	alg := keyAlgorithm(key)
	if alg == x509.UnknownPublicKeyAlgorithm {
		return nil
	}
	for _, c := range chain {
		if c == nil {
			continue
		}
		anchor := &x509.Certificate{
			RawSubject:              c.RawIssuer,
			PublicKey:               key,
			PublicKeyAlgorithm:      alg,
			RawSubjectPublicKeyInfo: r.Data,
			BasicConstraintsValid:   true,
			IsCA:                    true,
			MaxPathLen:              -1, // no constraint
			NotAfter:                time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		}
		if c.CheckSignatureFrom(anchor) == nil {
			return anchor
		}
	}
	return nil
}

func keyAlgorithm(key any) x509.PublicKeyAlgorithm {
	switch key.(type) {
	case *rsa.PublicKey:
		return x509.RSA
	case *ecdsa.PublicKey:
		return x509.ECDSA
	case ed25519.PublicKey:
		return x509.Ed25519
	}
	return x509.UnknownPublicKeyAlgorithm
}

// verifyChain checks that the leaf chains to anchor through the rest of
// chain, with valid dates, and names one of names.
func verifyChain(anchor *x509.Certificate, chain []*x509.Certificate, names []string, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// The domain's own trust anchor, not the Web PKI: no EKU policy.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("%w: %v", ErrExpired, err)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrNotTrusted, err)
	}
	for _, n := range names {
		if chain[0].VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: none of %q", ErrHostMismatch, names)
}

// Config is the client tls.Config for a DANE host: ServerName (SNI) host
// (RFC 7672 §8.1), and the chain checked by Verify against recs and names
// (with InsecureSkipVerify, as Go's own verification knows nothing of
// TLSA) at the time of each handshake. recs and names are copied. A
// ClientSessionCache the caller sets makes handshakes resume sessions;
// a resumed one is checked too, its session's chain against this
// Config's recs and names (crypto/tls runs VerifyConnection on
// resumptions), so a session made under records that no longer match
// fails.
func Config(host string, recs []resolver.TLSA, names []string) *tls.Config {
	recs = slices.Clone(recs)
	names = slices.Clone(names)
	return &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: true, // Verify runs in VerifyConnection instead
		VerifyConnection: func(cs tls.ConnectionState) error {
			return Verify(cs.PeerCertificates, recs, names, time.Now())
		},
	}
}
