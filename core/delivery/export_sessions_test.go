package delivery

// TLSSessionBytes is the size of the TLS session s keeps for host at level
// in crypto/tls's own encoding (SessionState.Bytes: the next hop's
// certificates, the secrets and the ticket), 0 when it keeps none.
func TLSSessionBytes(s *SMTP, level, host string) int {
	cs, ok := s.sessions.cache(level, nil).Get(host)
	if !ok || cs == nil {
		return 0
	}
	ticket, st, err := cs.ResumptionState()
	if err != nil || st == nil {
		return 0
	}
	b, err := st.Bytes()
	if err != nil {
		return 0
	}
	return len(b) + len(ticket)
}
