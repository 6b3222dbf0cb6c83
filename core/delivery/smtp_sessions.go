package delivery

// This file keeps the SMTP transport's TLS sessions for resumption (RFC
// 5077 tickets under TLS 1.2, RFC 8446 §2.2 PSKs under TLS 1.3), as
// Postfix's smtp_tls_session_cache_database does: a new connection to a
// next hop it talked to lately skips the certificate exchange and its
// check, and under TLS 1.2 the key exchange too.

import (
	"crypto/tls"
)

// DefaultTLSSessions is how many TLS sessions the SMTP transport keeps per
// TLS level when SMTPOptions.TLSSessions is 0. A session costs about 3 KB
// (mostly the next hop's certificates), at most maxSessionBytes.
const DefaultTLSSessions = 1000

// maxSessionBytes is the largest session kept (crypto/tls's encoding: the
// next hop's certificates, the secrets, the ticket): a next hop decides
// what it sends, up to 256 KiB of certificates, and a thousand of those
// would be hundreds of megabytes. Real chains make 2–6 KB.
const maxSessionBytes = 16 << 10

// tlsSessions are the SMTP transport's TLS session caches, one per TLS
// level, each a bounded LRU keyed by the config's ServerName (the MX or
// route host name, or the IP of a literal) and the address dialled (as
// Postfix's serverid: two next hops on one name hold their own sessions):
// the client resumes a session only under the level it was made under.
//
// Why that is safe, from crypto/tls's client (handshake_client.go,
// loadSession): a config that verifies (InsecureSkipVerify false) never
// resumes a session made without verification (one with no verified
// chains), and checks a resumed one's chain against its RootCAs, its
// ServerName and the time again. Keeping the levels apart adds that a
// session is only ever offered where the same check made it, and that the
// busy unverified levels do not push the others' sessions out.
//
// Not resumed: DANE and an MTA-STS policy in testing mode (sessionsFor).
// Their checks run in VerifyConnection, with the session's certificates
// on a resumption, which are the ones the next hop showed when the
// session began: DANE would fail a session whose CA certificate was
// re-issued under the same pinned key and has since expired, and testing
// mode, whose job is to report what the next hop shows now, would report
// for days the certificate it showed then. The operator's configs
// (SMTPOptions.TLSConfig) are theirs: they resume only with a
// ClientSessionCache of their own.
//
// A nil tlsSessions (resumption off) gives no cache for any level.
type tlsSessions map[string]tls.ClientSessionCache

// newTLSSessions makes an empty cache of size sessions for every level
// whose sessions are resumed; size < 0 makes none.
func newTLSSessions(size int) tlsSessions {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultTLSSessions
	}
	t := tlsSessions{}
	for _, level := range []string{TLSOpportunistic, TLSEncrypt, TLSVerify, TLSRequire, TLSMTASTS} {
		t[level] = tls.NewLRUClientSessionCache(size)
	}
	return t
}

// cache is the session cache of a connection with key, nil for none.
func (t tlsSessions) cache(key connKey) tls.ClientSessionCache {
	c := t[key.tls]
	if c == nil {
		return nil
	}
	return sessionView{c, " " + key.addr}
}

// sessionView is a level's cache as a connection to one address sees it:
// its keys (crypto/tls's: the ServerName) carry the address, and a
// session over maxSessionBytes is not kept (nor the one it replaces).
type sessionView struct {
	tls.ClientSessionCache
	suffix string
}

func (v sessionView) Get(key string) (*tls.ClientSessionState, bool) {
	return v.ClientSessionCache.Get(key + v.suffix)
}

func (v sessionView) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil && sessionBytes(cs) > maxSessionBytes {
		cs = nil // crypto/tls's "forget it"
	}
	v.ClientSessionCache.Put(key+v.suffix, cs)
}

// sessionBytes is the size of cs in crypto/tls's encoding, or a size over
// maxSessionBytes when it cannot be encoded.
func sessionBytes(cs *tls.ClientSessionState) int {
	ticket, st, err := cs.ResumptionState()
	if err != nil || st == nil {
		return maxSessionBytes + 1
	}
	b, err := st.Bytes()
	if err != nil {
		return maxSessionBytes + 1
	}
	return len(b) + len(ticket)
}
