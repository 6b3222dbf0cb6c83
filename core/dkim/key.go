package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MinRSABits is the smallest RSA key a dkim block may use (RFC 8301 §3.2:
// verifiers must not accept less than 1024 bits).
const MinRSABits = 1024

// ErrBadKey is wrapped by every error about a key file's content.
var ErrBadKey = errors.New("dkim: bad key")

// Key is a parsed private signing key: RSA or Ed25519. It is parsed once,
// when the configuration is loaded, and shared by every signature made
// with it. Its text form (String, MarshalText) names the algorithm and
// size only, so a dump of the configuration never shows the key.
type Key struct {
	signer crypto.Signer
	bits   int // RSA modulus size; 256 for Ed25519
}

// ParseKey parses a PEM private key: "RSA PRIVATE KEY" (PKCS#1) or
// "PRIVATE KEY" (PKCS#8) holding an RSA key of at least MinRSABits bits or
// an Ed25519 key.
func ParseKey(data []byte) (*Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrBadKey)
	}
	if b, _ := pem.Decode(rest); b != nil {
		return nil, fmt.Errorf("%w: more than one PEM block", ErrBadKey)
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%w: a PEM %q block, want \"PRIVATE KEY\" (PKCS#8) or \"RSA PRIVATE KEY\" (PKCS#1)", ErrBadKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return newKey(k)
}

// LoadKey reads and parses the PEM key file at path (ParseKey).
func LoadKey(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return ParseKey(b)
}

// newKey checks that k is a key DKIM may sign with.
func newKey(k any) (*Key, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return nil, fmt.Errorf("%w: an RSA key of %d bits; at least %d are needed", ErrBadKey, n, MinRSABits)
		}
		k.Precompute()
		return &Key{signer: k, bits: k.N.BitLen()}, nil
	case ed25519.PrivateKey:
		return &Key{signer: k, bits: 256}, nil
	}
	return nil, fmt.Errorf("%w: a %T; DKIM signs with RSA or Ed25519", ErrBadKey, k)
}

// GenerateKey makes a new key: algorithm "rsa" (bits at least MinRSABits)
// or "ed25519" (bits ignored).
func GenerateKey(algorithm string, bits int) (*Key, error) {
	switch algorithm {
	case "rsa":
		if bits < MinRSABits {
			return nil, fmt.Errorf("%w: an RSA key needs at least %d bits, not %d", ErrBadKey, MinRSABits, bits)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, fmt.Errorf("dkim: generating a key: %w", err)
		}
		return newKey(k)
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("dkim: generating a key: %w", err)
		}
		return newKey(k)
	}
	return nil, fmt.Errorf("%w: algorithm %q, want \"rsa\" or \"ed25519\"", ErrBadKey, algorithm)
}

// Signer is the key for crypto operations (an ARC seal signs with it too).
func (k *Key) Signer() crypto.Signer { return k.signer }

// Algorithm is the key type as DKIM names it in k= and a=: "rsa" or
// "ed25519".
func (k *Key) Algorithm() string {
	if _, ok := k.signer.(ed25519.PrivateKey); ok {
		return "ed25519"
	}
	return "rsa"
}

// SigningAlgorithm is the a= tag a signature with k carries:
// "rsa-sha256" or "ed25519-sha256".
func (k *Key) SigningAlgorithm() string { return k.Algorithm() + "-sha256" }

// Bits is the RSA modulus size, or 256 for Ed25519.
func (k *Key) Bits() int { return k.bits }

// String is "rsa-2048" or "ed25519".
func (k *Key) String() string {
	if k.Algorithm() == "ed25519" {
		return "ed25519"
	}
	return "rsa-" + strconv.Itoa(k.bits)
}

// MarshalText is String: a configuration dumped as JSON shows the kind of
// key, never the key.
func (k *Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// PEM is the key as a PKCS#8 "PRIVATE KEY" PEM block, as a key file holds it.
func (k *Key) PEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, fmt.Errorf("dkim: encoding the key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicKey is the p= value of the key's DNS record: the base64 of the
// SubjectPublicKeyInfo for RSA (RFC 6376 §3.6.1), of the 32-byte public
// key for Ed25519 (RFC 8463 §4).
func (k *Key) PublicKey() string {
	switch pub := k.signer.Public().(type) {
	case ed25519.PublicKey:
		return base64.StdEncoding.EncodeToString(pub)
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			panic(fmt.Sprintf("dkim: an RSA public key does not marshal: %v", err)) // cannot happen: newKey took it
		}
		return base64.StdEncoding.EncodeToString(der)
	}
}

// Record is the TXT record's text to publish for k:
// "v=DKIM1; k=rsa; p=…".
func (k *Key) Record() string {
	return "v=DKIM1; k=" + k.Algorithm() + "; p=" + k.PublicKey()
}

// maxTXTString is the longest character-string of a TXT record (RFC 1035
// §3.3.14: a length octet, then the octets).
const maxTXTString = 255

// TXT is the DNS record to publish for k as selector of domain, in zone
// file form: `s1._domainkey.example.test. IN TXT ( "v=DKIM1; k=rsa; p=…"
// "…" )`, the text (Record) split into strings of at most 255 octets,
// which a verifier joins again (RFC 6376 §3.6.2.2).
func (k *Key) TXT(selector, domain string) string {
	rec := k.Record()
	var b strings.Builder
	b.WriteString(selector + "._domainkey." + strings.TrimSuffix(domain, ".") + ". IN TXT (")
	for len(rec) > 0 {
		n := min(len(rec), maxTXTString)
		b.WriteString(` "` + rec[:n] + `"`)
		rec = rec[n:]
	}
	b.WriteString(" )")
	return b.String()
}
