package resolver

import (
	"context"
	"encoding/hex"
	"strconv"

	"github.com/miekg/dns"
)

// TLSA is one TLSA record (RFC 6698 §2.1): how a TLS server's certificate
// is to be matched. Data is the certificate association data, decoded.
type TLSA struct {
	Usage        uint8 // 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE
	Selector     uint8 // 0 the full certificate, 1 its SubjectPublicKeyInfo
	MatchingType uint8 // 0 exact, 1 SHA2-256, 2 SHA2-512
	Data         []byte
}

// String is the record's presentation form, "3 1 1 <hex>", as TLS-RPT
// reports and the logs show it.
func (t TLSA) String() string {
	return strconv.Itoa(int(t.Usage)) + " " + strconv.Itoa(int(t.Selector)) + " " +
		strconv.Itoa(int(t.MatchingType)) + " " + hex.EncodeToString(t.Data)
}

// TLSA looks up name's TLSA records (name is "_25._tcp.mx.example.com"),
// following CNAMEs.
//
// secure is the AD bit of the answer: the configured server says it
// validated it with DNSSEC (the query sets DO and AD). The Resolver trusts
// that bit, so it is only as good as the server and the path to it: a
// validating resolver on the same host or a trusted network. Along a CNAME
// chain looked up in several queries, every answer must be secure.
//
// A NXDOMAIN or NODATA answer is (nil, secure, nil), secure saying whether
// the denial was authenticated. SERVFAIL (which is also how a validating
// server reports a bogus answer), REFUSED, timeouts and network errors are
// temporary errors (IsTemporary), an invalid name ErrInvalidName.
func (r *Resolver) TLSA(ctx context.Context, name string) (recs []TLSA, secure bool, err error) {
	q, err := r.fqdn(name)
	if err != nil {
		return nil, false, &Error{Name: name, Type: "TLSA", Err: err}
	}
	res, err := r.resolve(ctx, q, dns.TypeTLSA)
	if err != nil {
		return nil, false, err
	}
	for _, rr := range res.rrs {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			continue // not from the wire: miekg/dns writes the data as hex
		}
		recs = append(recs, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return recs, res.secure, nil
}
