package mailauth

import (
	"context"
	"net"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/mailgate/gateway/core/envelope"
)

// spfOutcome is the SPF result and the identity it is for.
type spfOutcome struct {
	result string // "" when not checked
	domain string // the domain checked
	// mailfrom is the MAIL FROM address checked; helo is set instead when
	// MAIL FROM was <> and the HELO identity was checked.
	mailfrom, helo string
}

// checkSPF evaluates SPF for MAIL FROM, or for the HELO identity
// ("postmaster@" the HELO name, RFC 7208 §2.4) when MAIL FROM is <>. The
// library keeps RFC 7208 §4.6.4's limits: 10 terms that query DNS, 2 void
// look-ups. A HELO name that is not a domain has no SPF identity: none.
func (c *Checker) checkSPF(ctx context.Context, m *Message) spfOutcome {
	out := spfOutcome{}
	sender := m.Sender.String()
	if m.Sender.IsNull() {
		if !isDomain(m.HELO) {
			out.result, out.helo = "none", m.HELO
			return out
		}
		out.domain, out.helo = envelope.FoldDomain(m.HELO), m.HELO
		sender = "postmaster@" + m.HELO
	} else {
		out.domain, out.mailfrom = envelope.FoldDomain(m.Sender.Domain), sender
	}
	res, err := spf.CheckHostWithSender(net.IP(m.ClientIP.Unmap().AsSlice()), m.HELO, sender,
		spf.WithContext(ctx), spf.WithResolver(spfDNS{c.opt.Resolver}))
	out.result = string(res)
	c.log.DebugContext(ctx, "mailauth: spf", "domain", out.domain, "result", out.result, "why", err)
	return out
}

// isDomain reports whether s is a domain name (an EHLO argument that is
// not an address literal).
func isDomain(s string) bool {
	return envelope.ValidHost(s) && !strings.HasPrefix(s, "[")
}
