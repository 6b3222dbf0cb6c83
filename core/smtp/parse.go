package smtp

// This file is the command-line parser. Signatures are the contract the
// session (server.go) builds on; see the doc comments for exact behaviour.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

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

// ErrUTF8Required is returned for a path with UTF-8 in a MAIL without
// SMTPUTF8, or in a RCPT of such a transaction. It wraps ErrSyntax (so a
// session that knows only ErrSyntax answers 501 5.5.4); RFC 6531 §3.5
// suggests 553 5.6.7 for it.
var ErrUTF8Required = fmt.Errorf("smtp: UTF-8 address without SMTPUTF8: %w", ErrSyntax)

// Limits of parameter values.
const (
	MaxVerbLength  = 16
	MaxEnvIDLength = 100 // RFC 3461 §4.4, xtext as received
	MaxORCPTLength = 500 // RFC 3461 §4.2, "addr-type;xtext" as received
)

// ParseCommand splits a command line (without its CRLF) into verb and
// argument. The verb is 1-16 ASCII letters (and digits), case-insensitive;
// the argument follows a single space. A line with a NUL byte, or a verb
// with other characters, is ErrSyntax.
//
// A CR or LF inside the line (the session strips only the final CRLF) is
// ErrSyntax too. The argument is everything after the first space, as
// received: "NOOP  x" has the argument " x", "QUIT " the argument "".
func ParseCommand(line []byte) (Command, error) {
	v := 0
	for v < len(line) && isAlnum(line[v]) {
		v++
	}
	switch {
	case v == 0:
		return Command{}, fmt.Errorf("smtp: command line without a verb: %w", ErrSyntax)
	case v > MaxVerbLength:
		return Command{}, fmt.Errorf("smtp: verb longer than %d characters: %w", MaxVerbLength, ErrSyntax)
	case v < len(line) && line[v] != ' ':
		return Command{}, fmt.Errorf("smtp: bad character %q after the verb: %w", line[v], ErrSyntax)
	}
	for _, c := range line[v:] {
		switch c {
		case 0:
			return Command{}, fmt.Errorf("smtp: NUL in command line: %w", ErrSyntax)
		case '\r', '\n':
			return Command{}, fmt.Errorf("smtp: CR or LF in command line: %w", ErrSyntax)
		}
	}
	verb := make([]byte, v)
	for i, c := range line[:v] {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		verb[i] = c
	}
	cmd := Command{Verb: string(verb)}
	if v < len(line) {
		cmd.Arg = string(line[v+1:])
	}
	return cmd, nil
}

// MailArgs is MAIL FROM parsed.
type MailArgs struct {
	From     envelope.Address
	Size     int64
	Body     envelope.Body
	SMTPUTF8 bool
	Ret      envelope.Ret
	EnvID    string // xtext as received
	Auth     string // AUTH= as received
	// RequireTLS is REQUIRETLS (RFC 8689 §2), which takes no value. The
	// session takes it only under TLS.
	RequireTLS bool
}

// RcptArgs is RCPT TO parsed.
type RcptArgs struct {
	To         envelope.Recipient
	Postmaster bool // "<postmaster>" without a domain: the session makes it Options.Postmaster
}

// ParseMail parses the argument of MAIL ("FROM:<path> params..."). FROM is
// case-insensitive; one space after the colon is tolerated (as Postfix
// does). Parameters: SIZE, BODY (7BIT, 8BITMIME, BINARYMIME), SMTPUTF8, RET
// (FULL, HDRS), ENVID (xtext, at most 100 chars), AUTH, REQUIRETLS. Any
// other keyword is ErrUnknownParam; a known keyword with a bad or repeated
// value is ErrBadParamValue. UTF-8 in the path is allowed only with SMTPUTF8.
//
// Details: parameters are separated by spaces (several are tolerated, as
// is a trailing one); a keyword that is not RFC 5321 esmtp-keyword syntax,
// or text glued to the path ("<a@b>X"), is ErrSyntax; a path error wraps
// both envelope.ErrBadAddress and ErrSyntax; UTF-8 in the path without
// SMTPUTF8 is ErrUTF8Required. BODY and RET values are returned in upper
// case; SIZE is 1-20 digits that fit in an int64; SMTPUTF8 and REQUIRETLS
// take no value; AUTH is "<>" or xtext. The first error found, left to
// right, is returned.
func ParseMail(arg string) (MailArgs, error) {
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		return MailArgs{}, fmt.Errorf(`smtp: MAIL without "FROM:": %w`, ErrSyntax)
	}
	rest = strings.TrimPrefix(rest, " ")
	from, params, err := envelope.ParsePath(rest, true, true)
	if err != nil {
		return MailArgs{}, fmt.Errorf("smtp: MAIL reverse-path: %w: %w", err, ErrSyntax)
	}
	path := rest[:len(rest)-len(params)]
	m := MailArgs{From: from}
	var seen paramSet
	err = eachParam(params, func(key, value string, hasValue bool) error {
		if err := seen.add(key); err != nil {
			return err
		}
		switch key {
		case "SIZE":
			n, err := parseDecimal(value)
			if err != nil {
				return badValue(key, value, err.Error())
			}
			m.Size = n
		case "BODY":
			switch b := envelope.Body(upperASCII(value)); b {
			case envelope.Body7Bit, envelope.Body8BitMIME, envelope.BodyBinaryMIME:
				m.Body = b
			default:
				return badValue(key, value, "not 7BIT, 8BITMIME or BINARYMIME")
			}
		case "SMTPUTF8":
			if hasValue {
				return badValue(key, value, "takes no value")
			}
			m.SMTPUTF8 = true
		case "REQUIRETLS":
			if hasValue {
				return badValue(key, value, "takes no value")
			}
			m.RequireTLS = true
		case "RET":
			switch r := envelope.Ret(upperASCII(value)); r {
			case envelope.RetFull, envelope.RetHdrs:
				m.Ret = r
			default:
				return badValue(key, value, "not FULL or HDRS")
			}
		case "ENVID":
			switch {
			case value == "":
				return badValue(key, value, "empty")
			case len(value) > MaxEnvIDLength:
				return badValue(key, value, fmt.Sprintf("longer than %d characters", MaxEnvIDLength))
			case !ValidXText(value):
				return badValue(key, value, "not xtext")
			}
			m.EnvID = value
		case "AUTH":
			if value == "" || value != "<>" && !ValidXText(value) {
				return badValue(key, value, `not "<>" or xtext`)
			}
			m.Auth = value
		default:
			return fmt.Errorf("smtp: MAIL parameter %q: %w", truncate(key), ErrUnknownParam)
		}
		return nil
	})
	if err != nil {
		return MailArgs{}, err
	}
	if !m.SMTPUTF8 && !isASCII(path) {
		return MailArgs{}, fmt.Errorf("smtp: MAIL reverse-path %q: %w", truncate(path), ErrUTF8Required)
	}
	return m, nil
}

// ParseRcpt parses the argument of RCPT ("TO:<path> params..."):
// NOTIFY (NEVER alone, or a list of SUCCESS, FAILURE, DELAY) and ORCPT
// (addr-type;xtext). smtputf8 allows UTF-8 in the path. Source routes
// ("<@a,@b:user@d>") are accepted and the route discarded (RFC 5321 §4.1.1.3).
//
// Details: "TO:" is case-insensitive and may be followed by one space;
// "<postmaster>" (any case) gives Postmaster and an Address whose Local is
// "postmaster" as received and whose Domain is empty. Parameters as in
// ParseMail. NOTIFY keywords are case-insensitive, each at most once.
// ORCPT is kept as received; addr-type is an RFC 5322 atom, the address
// part is non-empty xtext, except that with smtputf8 and addr-type
// "utf-8" (RFC 6533) it may also hold UTF-8. UTF-8 in the path without
// smtputf8 is ErrUTF8Required.
func ParseRcpt(arg string, smtputf8 bool) (RcptArgs, error) {
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		return RcptArgs{}, fmt.Errorf(`smtp: RCPT without "TO:": %w`, ErrSyntax)
	}
	rest = strings.TrimPrefix(rest, " ")
	var r RcptArgs
	var params string
	if len(rest) >= 12 && equalFoldASCII(rest[:12], "<postmaster>") {
		r.Postmaster = true
		r.To.Address = envelope.Address{Local: rest[1:11]}
		params = rest[12:]
	} else {
		to, p, err := envelope.ParsePath(rest, false, true)
		if err != nil {
			return RcptArgs{}, fmt.Errorf("smtp: RCPT forward-path: %w: %w", err, ErrSyntax)
		}
		if path := rest[:len(rest)-len(p)]; !smtputf8 && !isASCII(path) {
			return RcptArgs{}, fmt.Errorf("smtp: RCPT forward-path %q: %w", truncate(path), ErrUTF8Required)
		}
		r.To.Address, params = to, p
	}
	var seen paramSet
	err := eachParam(params, func(key, value string, hasValue bool) error {
		if err := seen.add(key); err != nil {
			return err
		}
		switch key {
		case "NOTIFY":
			n, err := envelope.ParseNotify(value)
			if err != nil {
				return badValue(key, value, err.Error())
			}
			r.To.Notify = n
		case "ORCPT":
			if reason := checkORCPT(value, smtputf8); reason != "" {
				return badValue(key, value, reason)
			}
			r.To.ORCPT = value
		default:
			return fmt.Errorf("smtp: RCPT parameter %q: %w", truncate(key), ErrUnknownParam)
		}
		return nil
	})
	if err != nil {
		return RcptArgs{}, err
	}
	return r, nil
}

// String returns the MAIL argument as a client sends it: "FROM:<path>"
// then the parameters that are set, in the order SIZE, BODY, SMTPUTF8,
// RET, ENVID, AUTH (SIZE=0 is not written). ParseMail(m.String()) == m
// for every m ParseMail returns.
func (m MailArgs) String() string {
	var b strings.Builder
	b.WriteString("FROM:")
	b.WriteString(m.From.Path())
	if m.Size > 0 {
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(m.Size, 10))
	}
	writeParam(&b, "BODY", string(m.Body))
	if m.SMTPUTF8 {
		b.WriteString(" SMTPUTF8")
	}
	writeParam(&b, "RET", string(m.Ret))
	writeParam(&b, "ENVID", m.EnvID)
	writeParam(&b, "AUTH", m.Auth)
	if m.RequireTLS {
		b.WriteString(" REQUIRETLS")
	}
	return b.String()
}

// String returns the RCPT argument as a client sends it: "TO:<path>", then
// NOTIFY and ORCPT if set. ParseRcpt(r.String(), utf8) == r for every r
// ParseRcpt(_, utf8) returns.
func (r RcptArgs) String() string {
	var b strings.Builder
	b.WriteString("TO:")
	b.WriteString(r.To.Address.Path())
	if n := r.To.Notify; n != 0 {
		b.WriteString(" NOTIFY=")
		b.WriteString(n.String())
	}
	writeParam(&b, "ORCPT", r.To.ORCPT)
	return b.String()
}

func writeParam(b *strings.Builder, key, value string) {
	if value == "" {
		return
	}
	b.WriteByte(' ')
	b.WriteString(key)
	b.WriteByte('=')
	b.WriteString(value)
}

// ParseBDAT parses the argument of BDAT (RFC 3030): "<size>" or
// "<size> LAST". The size is 1-20 decimal digits that fit in an int64
// (0 is allowed); LAST is case-insensitive and separated by exactly one
// space. Anything else is ErrSyntax.
func ParseBDAT(arg string) (size int64, last bool, err error) {
	num, word, hasWord := strings.Cut(arg, " ")
	if hasWord {
		if !equalFoldASCII(word, "LAST") {
			return 0, false, fmt.Errorf("smtp: BDAT %q: want a size and LAST: %w", truncate(arg), ErrSyntax)
		}
		last = true
	}
	size, err = parseDecimal(num)
	if err != nil {
		return 0, false, fmt.Errorf("smtp: BDAT size %q: %v: %w", truncate(num), err, ErrSyntax)
	}
	return size, last, nil
}

// paramSet remembers the parameter keywords of one command.
type paramSet []string

func (ps *paramSet) add(key string) error {
	for _, k := range *ps {
		if k == key {
			return fmt.Errorf("smtp: parameter %s given twice: %w", key, ErrBadParamValue)
		}
	}
	*ps = append(*ps, key)
	return nil
}

// eachParam splits the text after a path into esmtp-params and calls fn
// with the upper-case keyword and the value as received. s must be empty or
// start with a space.
func eachParam(s string, fn func(key, value string, hasValue bool) error) error {
	if s != "" && s[0] != ' ' {
		return fmt.Errorf("smtp: text %q after the path: %w", truncate(s), ErrSyntax)
	}
	for field := range strings.SplitSeq(s, " ") {
		if field == "" {
			continue
		}
		key, value, hasValue := strings.Cut(field, "=")
		if !validKeyword(key) {
			return fmt.Errorf("smtp: bad parameter keyword %q: %w", truncate(key), ErrSyntax)
		}
		if err := fn(upperASCII(key), value, hasValue); err != nil {
			return err
		}
	}
	return nil
}

// validKeyword checks esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func validKeyword(k string) bool {
	if k == "" || !isAlnum(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if !isAlnum(k[i]) && k[i] != '-' {
			return false
		}
	}
	return true
}

func badValue(key, value, reason string) error {
	return fmt.Errorf("smtp: parameter %s=%q: %s: %w", key, truncate(value), reason, ErrBadParamValue)
}

// parseDecimal parses 1-20 ASCII digits into an int64.
func parseDecimal(s string) (int64, error) {
	if s == "" || len(s) > 20 {
		return 0, errors.New("not 1-20 digits")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal number")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// checkORCPT checks "addr-type;xtext" and returns a reason if it is bad.
func checkORCPT(v string, smtputf8 bool) string {
	if len(v) > MaxORCPTLength {
		return fmt.Sprintf("longer than %d characters", MaxORCPTLength)
	}
	typ, addr, ok := strings.Cut(v, ";")
	if !ok {
		return `no ";" after the address type`
	}
	if typ == "" {
		return "empty address type"
	}
	for i := 0; i < len(typ); i++ {
		if !isAtext(typ[i]) {
			return "address type is not an atom"
		}
	}
	if addr == "" {
		return "empty address"
	}
	if ValidXText(addr) {
		return ""
	}
	if !smtputf8 || !equalFoldASCII(typ, "utf-8") || !utf8.ValidString(addr) {
		return "address is not xtext"
	}
	// RFC 6533 utf-8-addr-unitext: xtext plus UTF-8 characters.
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		switch {
		case c >= 0x80 || isXChar(c):
		case c == '+' && i+2 < len(addr) && isHex(addr[i+1]) && isHex(addr[i+2]):
			i += 2
		default:
			return "address is not xtext or UTF-8 text"
		}
	}
	return ""
}

// equalFoldASCII is strings.EqualFold for ASCII only: "ſ" is not "s".
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// upperASCII upper-cases ASCII letters only ("ı" stays).
func upperASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'a' <= b[j] && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// cutPrefixFold is strings.CutPrefix with ASCII case folding.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !equalFoldASCII(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// isAtext reports an RFC 5322 atext character (ASCII).
func isAtext(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
