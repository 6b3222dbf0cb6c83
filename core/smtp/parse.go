package smtp

// This file is the command-line parser. Signatures are the contract the
// session (server.go) builds on; see the doc comments for exact behaviour.

import (
	"errors"

	"github.com/mailgate/gateway/core/envelope"
)

// Command is one parsed command line.
type Command struct {
	Verb string // upper case, e.g. "MAIL"
	Arg  string // the rest of the line after one space, as received (no CRLF)
}

// Parse errors; the session maps each to its reply.
var (
	ErrSyntax        = errors.New("smtp: syntax error")           // 501 5.5.4 (or 500 5.5.2 for a bad verb)
	ErrUnknownParam  = errors.New("smtp: unrecognized parameter") // 555 5.5.4
	ErrBadParamValue = errors.New("smtp: bad parameter value")    // 501 5.5.4
)

// ParseCommand splits a command line (without its CRLF) into verb and
// argument. The verb is 1-16 ASCII letters (and digits), case-insensitive;
// the argument follows a single space. A line with a NUL byte, or a verb
// with other characters, is ErrSyntax.
func ParseCommand(line []byte) (Command, error) { panic("todo") }

// MailArgs is MAIL FROM parsed.
type MailArgs struct {
	From     envelope.Address
	Size     int64
	Body     envelope.Body
	SMTPUTF8 bool
	Ret      envelope.Ret
	EnvID    string // xtext as received
	Auth     string // AUTH= as received
}

// RcptArgs is RCPT TO parsed.
type RcptArgs struct {
	To         envelope.Recipient
	Postmaster bool // "<postmaster>" without a domain
}

// ParseMail parses the argument of MAIL ("FROM:<path> params..."). FROM is
// case-insensitive; one space after the colon is tolerated (as Postfix
// does). Parameters: SIZE, BODY (7BIT, 8BITMIME, BINARYMIME), SMTPUTF8, RET
// (FULL, HDRS), ENVID (xtext, at most 100 chars), AUTH. Any other keyword
// is ErrUnknownParam; a known keyword with a bad or repeated value is
// ErrBadParamValue. UTF-8 in the path is allowed only with SMTPUTF8.
func ParseMail(arg string) (MailArgs, error) { panic("todo") }

// ParseRcpt parses the argument of RCPT ("TO:<path> params..."):
// NOTIFY (NEVER alone, or a list of SUCCESS, FAILURE, DELAY) and ORCPT
// (addr-type;xtext). smtputf8 allows UTF-8 in the path. Source routes
// ("<@a,@b:user@d>") are accepted and the route discarded (RFC 5321 §4.1.1.3).
func ParseRcpt(arg string, smtputf8 bool) (RcptArgs, error) { panic("todo") }
