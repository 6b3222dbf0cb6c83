// Package envelope owns the value types that travel between the parts of the
// gateway: a mailbox Address, an Envelope (sender, recipients, DSN and
// transport parameters, client facts) and the per-recipient Recipient. It does
// no I/O and holds no state; core/smtp fills these from the wire and
// core/queue stores them.
package envelope

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Address is a mailbox as it appears in a reverse- or forward-path. The zero
// Address is the null reverse-path "<>".
type Address struct {
	Local  string // local part, unquoted form as received (quoted strings keep their quotes)
	Domain string // domain as received; IDNA U-labels are allowed only with SMTPUTF8
}

// IsNull reports whether a is the null reverse-path <>.
func (a Address) IsNull() bool { return a.Local == "" && a.Domain == "" }

// String returns local@domain, or "" for the null path.
func (a Address) String() string {
	if a.IsNull() {
		return ""
	}
	if a.Domain == "" {
		return a.Local
	}
	return a.Local + "@" + a.Domain
}

// Path returns the address in angle brackets as SMTP writes it: <local@domain> or <>.
func (a Address) Path() string { return "<" + a.String() + ">" }

// DomainFold returns the domain for comparison: ASCII letters lower-cased,
// without a trailing dot. Only ASCII is folded: strings.ToLower would make
// "\u212Aiosk.test" (a Kelvin sign) the domain "kiosk.test" while the
// address keeps its Kelvin sign, so a relay or route check would pass for
// a domain that is not the one delivered to. A valid U-label has no
// upper case to fold (IDNA2008), and no IDNA mapping is done here.
func (a Address) DomainFold() string { return FoldDomain(a.Domain) }

// FoldDomain is DomainFold for a domain name on its own (a local domain
// from the config, an ETRN argument), so both sides of a comparison fold
// the same way.
func FoldDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	for i := 0; i < len(d); i++ {
		if 'A' <= d[i] && d[i] <= 'Z' {
			b := []byte(d)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return d
}

// Notify is the RFC 3461 NOTIFY parameter of one recipient, as a bit set.
// The zero value means the parameter was absent (the MTA default applies:
// FAILURE and DELAY).
type Notify uint8

const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// Names returns the NOTIFY keywords of n as RFC 3461 writes them: "NEVER"
// alone, or some of "SUCCESS", "FAILURE" and "DELAY" in that order; nil
// when n is 0 (not given). ParseNotify reads them back.
func (n Notify) Names() []string {
	if n&NotifyNever != 0 {
		return []string{"NEVER"}
	}
	var out []string
	for _, k := range notifyKeywords() {
		if n&k.bit != 0 {
			out = append(out, k.name)
		}
	}
	return out
}

// String returns the NOTIFY parameter's value: Names joined by commas, ""
// when n is 0.
func (n Notify) String() string { return strings.Join(n.Names(), ",") }

// ErrBadNotify is wrapped by every ParseNotify error.
var ErrBadNotify = errors.New("envelope: bad NOTIFY")

// ParseNotify parses a NOTIFY parameter's value (RFC 3461 §4.1): NEVER, or
// a comma-separated list of SUCCESS, FAILURE and DELAY, each at most once,
// in any case. It is the inverse of String.
func ParseNotify(v string) (Notify, error) {
	if v == "" {
		return 0, fmt.Errorf("%w: empty", ErrBadNotify)
	}
	var n Notify
	for word := range strings.SplitSeq(v, ",") {
		bit := notifyBit(word)
		switch {
		case bit == 0:
			return 0, fmt.Errorf("%w: not NEVER or a list of SUCCESS, FAILURE, DELAY", ErrBadNotify)
		case n&bit != 0:
			return 0, fmt.Errorf("%w: keyword repeated", ErrBadNotify)
		}
		n |= bit
	}
	if n&NotifyNever != 0 && n != NotifyNever {
		return 0, fmt.Errorf("%w: NEVER combined with another keyword", ErrBadNotify)
	}
	return n, nil
}

// notifyBit is the bit of one NOTIFY keyword in any ASCII case, 0 if word
// is none.
func notifyBit(word string) Notify {
	if strings.IndexFunc(word, func(r rune) bool { return r >= utf8.RuneSelf }) >= 0 {
		return 0 // strings.EqualFold would take "ſUCCESS" for SUCCESS
	}
	for _, k := range append(notifyKeywords(), notifyKeyword{NotifyNever, "NEVER"}) {
		if strings.EqualFold(word, k.name) {
			return k.bit
		}
	}
	return 0
}

// notifyKeyword is one bit of Notify and its keyword.
type notifyKeyword struct {
	bit  Notify
	name string
}

// notifyKeywords are the keywords other than NEVER, in RFC 3461's order.
func notifyKeywords() []notifyKeyword {
	return []notifyKeyword{{NotifySuccess, "SUCCESS"}, {NotifyFailure, "FAILURE"}, {NotifyDelay, "DELAY"}}
}

// Ret is the RFC 3461 RET parameter of MAIL FROM.
type Ret string

const (
	RetUnset Ret = ""
	RetFull  Ret = "FULL"
	RetHdrs  Ret = "HDRS"
)

// Body is the BODY parameter of MAIL FROM (RFC 6152, RFC 3030).
type Body string

const (
	Body7Bit       Body = "7BIT"
	Body8BitMIME   Body = "8BITMIME"
	BodyBinaryMIME Body = "BINARYMIME"
)

// Recipient is one forward-path with its DSN parameters.
type Recipient struct {
	Address Address
	Notify  Notify // 0 = not given
	ORCPT   string // RFC 3461 original recipient, "addr-type;xtext" as received, "" if not given
}

// Envelope is everything known about one transaction apart from the message
// content: what MAIL, RCPT and the session established.
type Envelope struct {
	Sender     Address
	Recipients []Recipient

	Size     int64  // SIZE= declared by the client (0 if not given)
	Body     Body   // BODY= (empty if not given)
	SMTPUTF8 bool   // SMTPUTF8 given on MAIL
	Ret      Ret    // RET=
	EnvID    string // ENVID= as received (xtext)
	Auth     string // AUTH= parameter of MAIL (RFC 4954), as received

	// Client facts, recorded for Received headers, logs and hooks.
	ClientIP   string // remote IP, no port
	ClientHELO string // EHLO/HELO argument
	AuthUser   string // authenticated identity, "" if none
	TLS        bool   // the session was under TLS when the message was received
	// Submitted says the message is ours to send: the client was in
	// relay.networks or authenticated (pickup and inject sessions are).
	// Outbound DKIM signs only such mail. A record spooled before the
	// field existed reads as false.
	Submitted bool
	Received  time.Time // when the end of data was received

	// RequireTLS is MAIL FROM's REQUIRETLS (RFC 8689 §4.1): the message
	// may go on only over verified TLS to a next hop that offers
	// REQUIRETLS too, else it bounces (5.7.30). The server takes it only
	// under TLS.
	RequireTLS bool
	// TLSOptional is the message's "TLS-Required: No" header field (RFC
	// 8689 §5): the sender asks that recipient TLS policy (MTA-STS,
	// DANE) not stop delivery. Never set together with RequireTLS, which
	// makes the field meaningless (§4.1).
	TLSOptional bool
}
