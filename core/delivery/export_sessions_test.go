package delivery

// TLSSessionBytes is the size of the TLS session s keeps for host at addr
// (ip:port) at level in crypto/tls's own encoding (SessionState.Bytes:
// the next hop's certificates, the secrets and the ticket), 0 when it
// keeps none.
func TLSSessionBytes(s *SMTP, level, host, addr string) int {
	c := s.sessions.cache(connKey{host: host, addr: addr, tls: level})
	if c == nil {
		return 0
	}
	cs, ok := c.Get(host)
	if !ok || cs == nil {
		return 0
	}
	return sessionBytes(cs)
}
