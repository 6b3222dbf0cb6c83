package dane

import (
	"context"

	"github.com/mailgate/gateway/core/resolver"
)

// Level is what DANE asks of the connection to one MX host.
type Level uint8

const (
	// LevelNone: DANE does not apply (the host's addresses or its TLSA
	// records are not DNSSEC-validated, or it publishes none); the other
	// policies (MTA-STS, the route's tls level) decide.
	LevelNone Level = iota
	// LevelEncrypt: the host has validated TLSA records but none usable
	// for SMTP: TLS is mandatory, without authentication (RFC 7672 §2.2,
	// as Postfix's "encrypt").
	LevelEncrypt
	// LevelVerify: TLS is mandatory and Config(host, Policy.Usable, names)
	// authenticates the server; a failure defers, never falls back.
	LevelVerify
)

// Policy is the DANE policy of one MX host.
type Policy struct {
	Level  Level
	Usable []resolver.TLSA // the records Verify uses (LevelVerify)
	All    []resolver.TLSA // every record published, as TLS-RPT reports them
}

// Lookup decides the DANE policy of an MX host, as RFC 7672 §2.2 does:
// TLSA records at "_25._tcp.<host>" are looked up only when the host's
// addresses are secure, and count only when their answer is secure too.
// A failed look-up is an error (temporary per resolver.IsTemporary: a
// validating server reports a bogus answer as SERVFAIL), and the caller
// must not deliver to that host without TLS because of it: it defers.
// TLSA records are looked up at the MX host name as given, not at the end
// of a CNAME chain from it.
func Lookup(ctx context.Context, r *resolver.Resolver, host string) (Policy, error) {
	_, secure, err := r.LookupIPSecure(ctx, host)
	if err != nil || !secure {
		return Policy{}, err
	}
	recs, secure, err := r.TLSA(ctx, "_25._tcp."+host)
	switch {
	case err != nil:
		return Policy{}, err
	case !secure || len(recs) == 0:
		return Policy{}, nil
	}
	p := Policy{Level: LevelEncrypt, Usable: Usable(recs), All: recs}
	if len(p.Usable) > 0 {
		p.Level = LevelVerify
	}
	return p, nil
}
