// Package envelope owns the value types that travel between the parts of the
// gateway: a mailbox Address, an Envelope (sender, recipients, DSN and
// transport parameters, client facts) and the per-recipient Recipient. It does
// no I/O and holds no state; core/smtp fills these from the wire and
// core/queue stores them.
package envelope

import (
	"strings"
	"time"
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

// DomainFold returns the domain lower-cased for comparison.
func (a Address) DomainFold() string { return strings.ToLower(strings.TrimSuffix(a.Domain, ".")) }

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
	ClientIP   string    // remote IP, no port
	ClientHELO string    // EHLO/HELO argument
	AuthUser   string    // authenticated identity, "" if none
	TLS        bool      // the session was under TLS when the message was received
	Received   time.Time // when the end of data was received
}
