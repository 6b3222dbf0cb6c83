package delivery

import (
	"context"
	"io"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// Class is how a delivery attempt ended for one recipient.
type Class uint8

const (
	Temporary Class = iota // zero value: try again later (4xx, connection failures, DNS failures)
	Delivered              // 2xx: done
	Permanent              // 5xx, null MX, NXDOMAIN: bounce
)

func (c Class) String() string {
	switch c {
	case Delivered:
		return "delivered"
	case Permanent:
		return "permanent"
	}
	return "temporary"
}

// Result is the outcome of one attempt for one recipient.
type Result struct {
	Class     Class
	Code      int              // SMTP reply code (or the one a local transport stands for)
	Enhanced  sdk.EnhancedCode // RFC 3463 status
	Text      string           // reply text or error, single line, for logs and DSN Diagnostic-Code (not a success DSN's without RemoteMTA)
	RemoteMTA string           // the host that answered, "" if none
	Handoff   Handoff          // Delivered only: what took the message, which decides the success DSN
	// TLSPolicy is the TLS level the smtp transport used or failed to
	// have with the host that decided: "dane", "mta-sts", "verify",
	// "encrypt", "opportunistic" or "none"; "" for other transports and
	// for failures before any host was chosen.
	TLSPolicy string
	// Local says that this gateway decided the outcome: Text is its own
	// description of what failed (a connect error, a DNS failure, a
	// message the next hop cannot take as it is), not a reply of
	// RemoteMTA's, and a DSN must not present it as one. RemoteMTA may
	// still name the host involved (a connection to it was lost).
	Local bool
}

// Handoff is what a Delivered result handed the message to, which decides
// whether a recipient's NOTIFY=SUCCESS is ours to answer and how
// (RFC 3461 §4.1, §6.2.3).
type Handoff uint8

const (
	// HandoffFinal (the zero value): delivered into the mailbox, by a
	// Maildir or an LMTP server that does not offer DSN (the final
	// delivery agent). A success DSN says "delivered".
	HandoffFinal Handoff = iota
	// HandoffRelayed: handed to a next hop that does not offer DSN, so
	// it will send no success DSN. Ours says "relayed".
	HandoffRelayed
	// HandoffDSN: handed to a next hop that offers DSN, with the
	// recipient's NOTIFY and ORCPT: a success DSN is the next hop's to
	// send, and we send none.
	HandoffDSN
)

// Job is one delivery attempt: the recipients of one queued message that
// share a destination and a route.
type Job struct {
	ID         string               // queue ID
	Envelope   *envelope.Envelope   // sender, DSN and body parameters, Recipients as below; read-only
	Recipients []envelope.Recipient // this attempt's recipients
	Domain     string               // destination domain, lower case (the recipients' domain)
	Route      Route                // how to get there
	Size       int64                // bytes of Open's content
	// Open returns the message (trace header + content) from the spool; a
	// transport may call it more than once (a retry on the next MX).
	Open func() (io.ReadCloser, error)
}

// Route is a resolved route for one destination.
type Route struct {
	Transport string // "smtp", "lmtp", "maildir", or a plugin transport's name
	Via       string // host:port next hop; "" = MX look-up (smtp only)
	Path      string // maildir root; lmtp unix socket
	TLS       string // "none" | "opportunistic" | "require"
	// Auth is what the smtp transport logs in to the next hop with (a
	// smarthost); nil: no AUTH.
	Auth *Credentials
}

// Credentials are a username and password for SMTP AUTH.
type Credentials struct {
	Username string
	Password string
}

// Transport delivers jobs. Deliver returns one Result per job recipient, in
// order, and never fails as a whole: a connection failure is a Temporary
// result for every recipient. It honours ctx (shutdown, per-attempt
// deadline).
type Transport interface {
	Deliver(ctx context.Context, job *Job) []Result
}

// DeadHostCache is implemented by a transport that stops dialling a next
// hop for a while after a failed connect (SMTP). The operator's retries
// (ETRN, `gateway queue retry`) call ForgetDead so that the next attempt
// dials again: for the next hops tried for domain, or for all with "".
type DeadHostCache interface {
	ForgetDead(domain string)
}
