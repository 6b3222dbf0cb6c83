package smtp

import (
	"crypto/tls"
	"maps"
	"strings"
	"sync"
)

// TLSHandshake is what TLS handshakes are counted by (ServerStats and
// ClientOptions.TLSHandshakes): whether one resumed a session, which
// costs a server a fraction of a full one, and the protocol version.
type TLSHandshake struct {
	Result  string // HandshakeFull, HandshakeResumed or HandshakeFailed
	Version string // "TLSv1.3", "TLSv1.2", …; "" when it failed
}

// The results of a TLS handshake.
const (
	HandshakeFull    = "full"
	HandshakeResumed = "resumed"
	HandshakeFailed  = "failed"
)

// TLSCounter counts TLS handshakes by TLSHandshake. Its zero value is
// ready; it is safe for concurrent use.
type TLSCounter struct {
	mu     sync.Mutex
	counts map[TLSHandshake]int64
}

// count counts the handshake of tc that ended with err.
func (c *TLSCounter) count(tc *tls.Conn, err error) {
	if c == nil {
		return
	}
	k := TLSHandshake{Result: HandshakeFailed}
	if err == nil {
		st := tc.ConnectionState()
		k.Result, k.Version = HandshakeFull, versionName(st.Version)
		if st.DidResume {
			k.Result = HandshakeResumed
		}
	}
	c.mu.Lock()
	if c.counts == nil {
		c.counts = make(map[TLSHandshake]int64)
	}
	c.counts[k]++
	c.mu.Unlock()
}

// Counts returns a copy of the counts so far; nil before the first.
func (c *TLSCounter) Counts() map[TLSHandshake]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// versionName is a TLS version as mail logs write it: "TLSv1.3".
func versionName(v uint16) string {
	return strings.Replace(tls.VersionName(v), "TLS ", "TLSv", 1)
}
