package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/resolver"
)

const (
	version    = "v=TLSRPTv1" // how a TLSRPT record begins (§3)
	maxTargets = 10           // addresses and URLs one report goes to; a record naming more gets the first
)

// errNoRecord: the domain publishes no usable TLSRPT record, so it gets no
// report (a permanent answer, unlike a DNS failure).
var errNoRecord = errors.New("no TLSRPT record")

// dest is one rua: a mailto URI's addresses, or an HTTPS URL.
type dest struct {
	uri    string   // as published
	mailto []string // the addresses of a mailto URI
	https  *url.URL
}

// ParseRecord parses a TLSRPT TXT record (§3), "v=TLSRPTv1; rua=mailto:…,https://…",
// and returns its rua URIs as written that this package can send to:
// mailto URIs with ASCII addresses, and https URLs, ten addresses and URLs
// at most (a record is not a mailing list). Other schemes are skipped; a
// record that is malformed, has no rua or more than one, or no
// usable URI, is an error.
func ParseRecord(txt string) (rua []string, err error) {
	dests, err := parseRecord(txt)
	if err != nil {
		return nil, err
	}
	for _, d := range dests {
		rua = append(rua, d.uri)
	}
	return rua, nil
}

func parseRecord(txt string) ([]dest, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimRight(fields[0], " \t") != version {
		return nil, fmt.Errorf("tlsrpt: record %q does not begin with %s;", clip(txt), version)
	}
	var uris []string
	seen := false
	for i, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		if f == "" && i == len(fields)-2 {
			break // a trailing ";"
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validFieldName(name) || value == "" {
			return nil, fmt.Errorf("tlsrpt: record %q: bad field %q", clip(txt), clip(f))
		}
		if name != "rua" {
			continue // an extension (§3)
		}
		if seen {
			return nil, fmt.Errorf("tlsrpt: record %q: more than one rua", clip(txt))
		}
		seen = true
		for _, u := range strings.Split(value, ",") {
			uris = append(uris, strings.Trim(u, " \t"))
		}
	}
	if !seen {
		return nil, fmt.Errorf("tlsrpt: record %q: no rua", clip(txt))
	}
	var dests []dest
	var errs []error
	targets := 0
	for _, u := range uris {
		d, err := parseURI(u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		room := maxTargets - targets
		if room == 0 {
			break
		}
		if len(d.mailto) > room {
			d.mailto = d.mailto[:room]
		}
		targets += max(len(d.mailto), 1)
		dests = append(dests, d)
	}
	if len(dests) == 0 {
		return nil, fmt.Errorf("tlsrpt: record %q: no usable rua: %w", clip(txt), errors.Join(errs...))
	}
	return dests, nil
}

// validFieldName: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
func validFieldName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return false
		}
	}
	return true
}

// parseURI reads one rua: "mailto:" with one or more addresses (RFC 6068;
// a query is ignored), or "https:" with a host.
func parseURI(s string) (dest, error) {
	u, err := url.Parse(s)
	if err != nil {
		return dest{}, fmt.Errorf("rua %q: %w", clip(s), err)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" || u.Hostname() == "" {
			return dest{}, fmt.Errorf("rua %q: no host", clip(s))
		}
		u.Fragment, u.RawFragment = "", ""
		return dest{uri: s, https: u}, nil
	case "mailto":
		addrs, err := mailtoAddresses(u.Opaque)
		if err != nil {
			return dest{}, fmt.Errorf("rua %q: %w", clip(s), err)
		}
		return dest{uri: s, mailto: addrs}, nil
	}
	return dest{}, fmt.Errorf("rua %q: scheme %q is neither mailto nor https", clip(s), u.Scheme)
}

func mailtoAddresses(opaque string) ([]string, error) {
	to, err := url.PathUnescape(opaque)
	if err != nil {
		return nil, err
	}
	if to == "" {
		return nil, errors.New("no address")
	}
	var addrs []string
	for _, a := range strings.Split(to, ",") {
		addr, err := envelope.ParseAddress(a)
		if err != nil {
			return nil, err
		}
		if !isASCII(a) {
			return nil, fmt.Errorf("address %q is not ASCII", a)
		}
		addrs = append(addrs, addr.String())
	}
	return addrs, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// clip shortens what goes into an error message.
func clip(s string) string {
	if len(s) <= 100 {
		return s
	}
	i := 100
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// destinations looks up domain's TLSRPT record: errNoRecord (wrapped) when
// there is none, or not exactly one (§3), or it does not parse; another
// error for a DNS failure worth retrying.
func (r *Reporter) destinations(ctx context.Context, domain string) ([]dest, error) {
	if r.resolver == nil {
		return nil, errors.New("tlsrpt: no resolver")
	}
	txts, err := r.resolver.TXT(ctx, "_smtp._tls."+domain)
	if err != nil {
		if !resolver.IsTemporary(err) {
			return nil, fmt.Errorf("%w: %w", errNoRecord, err)
		}
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	var recs []string
	for _, t := range txts {
		if after, ok := strings.CutPrefix(t, version); ok && strings.HasPrefix(strings.TrimLeft(after, " \t"), ";") {
			recs = append(recs, t)
		}
	}
	if len(recs) != 1 {
		return nil, fmt.Errorf("%w: %d records at _smtp._tls.%s", errNoRecord, len(recs), domain)
	}
	dests, err := parseRecord(recs[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNoRecord, err)
	}
	return dests, nil
}
