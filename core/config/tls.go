package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"fmt"
)

// Certificates reads the certificate pairs of a listener's tls block:
// the ECDSA one first, if any (crypto/tls offers a client the first it
// takes), then cert's. Load reads them too, to report an unusable pair
// at its line; the gateway reads them when a listener starts and again
// on each reload.
func (t *TLS) Certificates() ([]tls.Certificate, error) {
	var certs []tls.Certificate
	if t.ECDSACert != "" {
		ec, err := loadECDSAPair(t.ECDSACert, t.ECDSAKey)
		if err != nil {
			return nil, err
		}
		certs = append(certs, ec)
	}
	c, err := loadPair(t.Cert, t.Key)
	if err != nil {
		return nil, err
	}
	return append(certs, c), nil
}

// loadPair reads cert and its key, which may be RSA, Ed25519, or ECDSA
// on a curve TLS clients offer (usableCurve).
func loadPair(cert, key string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return c, fmt.Errorf("tls: cert %s: %w", cert, err)
	}
	if k, ok := c.PrivateKey.(*ecdsa.PrivateKey); ok {
		if err := usableCurve(k); err != nil {
			return c, fmt.Errorf("tls: cert %s: %w", cert, err)
		}
	}
	return c, nil
}

// loadECDSAPair reads an ecdsa_cert and its key, which must be ECDSA on
// a curve TLS clients offer (usableCurve).
func loadECDSAPair(cert, key string) (tls.Certificate, error) {
	ec, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return ec, fmt.Errorf("tls: ecdsa_cert %s: %w", cert, err)
	}
	k, ok := ec.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return ec, fmt.Errorf("tls: ecdsa_cert %s: its key is %T, not an ECDSA key", cert, ec.PrivateKey)
	}
	if err := usableCurve(k); err != nil {
		return ec, fmt.Errorf("tls: ecdsa_cert %s: %w", cert, err)
	}
	return ec, nil
}

// usableCurve refuses an ECDSA key on a curve TLS clients do not offer:
// TLS 1.3 signs only with P-256, P-384 and P-521, and a certificate on
// another fails every client it is offered to.
func usableCurve(k *ecdsa.PrivateKey) error {
	switch k.Curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
		return nil
	}
	return fmt.Errorf("its key is on %s, which TLS clients do not offer (want P-256, P-384 or P-521)", k.Curve.Params().Name)
}
