package delivery

// This file keeps the SMTP transport's TLS sessions for resumption (RFC
// 5077 tickets under TLS 1.2, RFC 8446 §2.2 PSKs under TLS 1.3), as
// Postfix's smtp_tls_session_cache_database does: a new connection to a
// next hop it talked to lately skips the certificate exchange and its
// check, and under TLS 1.2 the key exchange too.

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/mailgate/gateway/core/resolver"
)

// DefaultTLSSessions is how many TLS sessions the SMTP transport keeps per
// TLS level when SMTPOptions.TLSSessions is 0. A session costs about 3 KB
// (mostly the next hop's certificate, which sessions of one host share).
const DefaultTLSSessions = 1000

// tlsSessions are the SMTP transport's TLS session caches, one per TLS
// level, each a bounded LRU keyed by the config's ServerName (the MX or
// route host name, or the IP of a literal): the client resumes a session
// only under the level it was made under, and under DANE only while the
// host's usable TLSA records are the ones it was made under (the key
// carries their digest, as Postfix's does).
//
// Why that is safe, from crypto/tls's client (handshake_client.go,
// loadSession): a config that verifies (InsecureSkipVerify false) never
// resumes a session made without verification (one with no verified
// chains), and checks a resumed one's chain against its RootCAs and
// ServerName again; a config with VerifyConnection (DANE, MTA-STS in
// testing mode) has it called on a resumed handshake too, with the
// session's certificates in PeerCertificates, so DANE checks them against
// the TLSA records of this attempt. Keeping the levels apart adds that a
// session is only ever offered where the same check made it, and that the
// busy unverified levels do not push the others' sessions out. Keying
// DANE's by the records keeps a key rollover working: once the records
// change, the next hop's new certificate comes in a full handshake
// instead of the old one's session failing the new records until the
// session's ticket expires.
//
// The operator's configs (SMTPOptions.TLSConfig) are theirs: they resume
// only with a ClientSessionCache of their own.
//
// A nil tlsSessions (resumption off) gives no cache for any level.
type tlsSessions map[string]tls.ClientSessionCache

// newTLSSessions makes an empty cache of size sessions for every level
// that uses TLS; size < 0 makes none.
func newTLSSessions(size int) tlsSessions {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultTLSSessions
	}
	t := tlsSessions{}
	for _, level := range []string{TLSOpportunistic, TLSEncrypt, TLSVerify, TLSRequire, TLSDANE, TLSMTASTS} {
		t[level] = tls.NewLRUClientSessionCache(size)
	}
	return t
}

// cache is the cache for a connection at level (whose usable TLSA
// records are tlsa under TLSDANE), nil for none.
func (t tlsSessions) cache(level string, tlsa []resolver.TLSA) tls.ClientSessionCache {
	c := t[level]
	if c == nil || level != TLSDANE {
		return c
	}
	return keyedSessions{c, " tlsa=" + tlsaDigest(tlsa)}
}

// tlsaDigest is the SHA-256 of recs in presentation form, in any order.
func tlsaDigest(recs []resolver.TLSA) string {
	strs := make([]string, len(recs))
	for i, r := range recs {
		strs[i] = r.String()
	}
	slices.Sort(strs)
	sum := sha256.Sum256([]byte(strings.Join(strs, "\n")))
	return hex.EncodeToString(sum[:])
}

// keyedSessions is a view of a session cache whose keys (crypto/tls's:
// the ServerName) carry a suffix.
type keyedSessions struct {
	tls.ClientSessionCache
	suffix string
}

func (k keyedSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return k.ClientSessionCache.Get(key + k.suffix)
}

func (k keyedSessions) Put(key string, cs *tls.ClientSessionState) {
	k.ClientSessionCache.Put(key+k.suffix, cs)
}
