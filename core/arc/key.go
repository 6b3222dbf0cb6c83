package arc

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/mailgate/gateway/core/resolver"
)

// Signing algorithms (the a= tag). rsa-sha256 is what RFC 8617 requires;
// ed25519-sha256 is RFC 8463's, signing the SHA-256 digest with Ed25519.
const (
	AlgRSASHA256     = "rsa-sha256"
	AlgEd25519SHA256 = "ed25519-sha256"
)

// minRSABits is the smallest RSA key accepted (RFC 8301 §3.2).
const minRSABits = 1024

// errTemporary marks a key that could not be fetched for now; anything
// else that goes wrong with a signature is a permanent failure.
var errTemporary = errors.New("temporary DNS failure")

// keyCache holds the keys fetched during one Verify, so that a chain whose
// sets share a selector asks DNS once.
type keyCache struct {
	lookup LookupTXT
	keys   map[string]keyResult
}

type keyResult struct {
	pub crypto.PublicKey
	err error
}

// publicKey fetches and parses the key of selector s in domain d for
// algorithm alg.
func (c *keyCache) publicKey(ctx context.Context, alg, s, d string) (crypto.PublicKey, error) {
	name := s + "._domainkey." + d
	if r, ok := c.keys[name]; ok {
		return keyFor(r, alg)
	}
	recs, err := c.lookup(ctx, name)
	var r keyResult
	switch {
	case err != nil && resolver.IsTemporary(err):
		r.err = fmt.Errorf("%w: key %s: %w", errTemporary, name, err)
	case err != nil:
		r.err = fmt.Errorf("key %s: %w", name, err)
	default:
		r.pub, r.err = parseKeyRecords(recs)
		if r.err != nil {
			r.err = fmt.Errorf("key %s: %w", name, r.err)
		}
	}
	if c.keys == nil {
		c.keys = make(map[string]keyResult)
	}
	c.keys[name] = r
	return keyFor(r, alg)
}

// keyFor checks that the key fits the algorithm the signature names.
func keyFor(r keyResult, alg string) (crypto.PublicKey, error) {
	if r.err != nil {
		return nil, r.err
	}
	switch r.pub.(type) {
	case *rsa.PublicKey:
		if alg == AlgRSASHA256 {
			return r.pub, nil
		}
	case ed25519.PublicKey:
		if alg == AlgEd25519SHA256 {
			return r.pub, nil
		}
	}
	return nil, fmt.Errorf("key type does not fit a=%s", alg)
}

// parseKeyRecords returns the key of the first TXT record that holds one.
func parseKeyRecords(recs []string) (crypto.PublicKey, error) {
	if len(recs) == 0 {
		return nil, errors.New("no key record")
	}
	var first error
	for _, rec := range recs {
		pub, err := parseKeyRecord(rec)
		if err == nil {
			return pub, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// parseKeyRecord parses a DKIM key record (RFC 6376 §3.6.1): v=DKIM1 first
// if present, k=rsa (default) or ed25519, h= listing sha256 if present,
// s= allowing email, p= the key (empty: revoked).
func parseKeyRecord(rec string) (crypto.PublicKey, error) {
	tags, err := parseTags(rec)
	if err != nil {
		return nil, err
	}
	if v, ok := tags.get("v"); ok && (v != "DKIM1" || tags[0].name != "v") {
		return nil, fmt.Errorf("bad key record version %q", v)
	}
	if h, ok := tags.get("h"); ok && !listHas(h, "sha256") {
		return nil, fmt.Errorf("key record allows hashes %q, not sha256", h)
	}
	if s, ok := tags.get("s"); ok && !listHas(s, "*") && !listHas(s, "email") {
		return nil, fmt.Errorf("key record is for services %q, not email", s)
	}
	p, ok := tags.get("p")
	if !ok {
		return nil, errors.New("key record has no p= tag")
	}
	if p = stripSpace(p); p == "" {
		return nil, errors.New("key revoked (empty p=)")
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("key p= is not base64: %w", err)
	}
	k, _ := tags.get("k")
	return parsePublicKey(strings.ToLower(k), der)
}

func parsePublicKey(k string, der []byte) (crypto.PublicKey, error) {
	switch k {
	case "", "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			pub, err = x509.ParsePKCS1PublicKey(der)
		}
		if err != nil {
			return nil, fmt.Errorf("bad RSA key: %w", err)
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("k=rsa record holds another key type")
		}
		if rk.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too short", rk.N.BitLen())
		}
		return rk, nil
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key of %d bytes", len(der))
		}
		return ed25519.PublicKey(der), nil
	}
	return nil, fmt.Errorf("unknown key type k=%s", k)
}

// listHas reports whether a colon-separated tag value lists item.
func listHas(list, item string) bool {
	for _, x := range strings.Split(list, ":") {
		if strings.EqualFold(strings.TrimSpace(x), item) {
			return true
		}
	}
	return false
}

// verifySig checks sig over the SHA-256 digest of the signed data.
func verifySig(pub crypto.PublicKey, digest, sig []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig)
	case ed25519.PublicKey:
		if ed25519.Verify(k, digest, sig) {
			return nil
		}
		return errors.New("ed25519: invalid signature")
	}
	return errors.New("unsupported key type")
}

// algorithmOf names the a= value for a signing key.
func algorithmOf(key crypto.Signer) (string, error) {
	switch key.Public().(type) {
	case *rsa.PublicKey:
		return AlgRSASHA256, nil
	case ed25519.PublicKey:
		return AlgEd25519SHA256, nil
	}
	return "", fmt.Errorf("arc: unsupported key type %T (want RSA or Ed25519)", key.Public())
}

// sign signs the SHA-256 digest of the data with key.
func sign(key crypto.Signer, digest []byte) ([]byte, error) {
	var opts crypto.SignerOpts = crypto.SHA256
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0) // RFC 8463: pure Ed25519 over the digest
	}
	return key.Sign(rand.Reader, digest, opts)
}

func digestOf(s string) []byte {
	d := sha256.Sum256([]byte(s))
	return d[:]
}
