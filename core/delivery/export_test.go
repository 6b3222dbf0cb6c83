package delivery

import "crypto/tls"

// ShareTLSSessions makes every TLS level of s keep its sessions in one
// cache, so that a test can see what crypto/tls itself refuses to resume
// (the levels' own caches keep it from being offered at all).
func ShareTLSSessions(s *SMTP) {
	shared := tls.NewLRUClientSessionCache(DefaultTLSSessions)
	for level := range s.sessions {
		s.sessions[level] = shared
	}
}
