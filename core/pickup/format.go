package pickup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/mailgate/gateway/core/envelope"
)

// magic is the first line of every pickup file: the format and its
// version. A reader refuses a version it does not know.
const magic = "gateway-pickup 1"

// Limits of the envelope part, which a reader checks before it believes
// anything of it.
const (
	maxLine       = 2048  // one envelope line, its newline included
	MaxRecipients = 10000 // recipients of one file
)

// ErrMalformed is wrapped by every error about a file's content: such a
// file goes to failed/, never back to the queue.
var ErrMalformed = errors.New("pickup: malformed file")

// Envelope is what a pickup file says about its message.
type Envelope struct {
	Sender     envelope.Address // the claimed sender (-f); zero = <>
	Recipients []envelope.Recipient
	Ret        envelope.Ret // RET= of a DSN request, or unset
	EnvID      string       // ENVID= (xtext), or ""
	// Body is BODY=: 8BITMIME for content with 8-bit bytes, BINARYMIME
	// (sendmail -bs) for content that is not even lines; the server
	// submits the latter with BDAT, byte for byte.
	Body     envelope.Body
	SMTPUTF8 bool
	// UID is the submitting user. Encode writes it; Open believes it only
	// in a file of the reader's own user or root, and otherwise reports
	// the file owner's uid.
	UID int
}

// Encode returns the envelope part of a pickup file, the empty line that
// ends it included:
//
//	gateway-pickup 1
//	uid 1000
//	sender <alice@example.test>
//	ret HDRS
//	envid abc
//	body 8BITMIME
//	smtputf8
//	rcpt <bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test
//	(empty line)
//
// Every line but the first two and the last is optional or repeatable
// (rcpt, at least once); a sender "<>" is the null path.
func (e *Envelope) Encode() ([]byte, error) {
	if len(e.Recipients) == 0 || len(e.Recipients) > MaxRecipients {
		return nil, fmt.Errorf("%w: %d recipients", ErrMalformed, len(e.Recipients))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nuid %d\nsender %s\n", magic, e.UID, e.Sender.Path())
	if e.Ret != envelope.RetUnset {
		fmt.Fprintf(&b, "ret %s\n", e.Ret)
	}
	if e.EnvID != "" {
		fmt.Fprintf(&b, "envid %s\n", e.EnvID)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, "body %s\n", e.Body)
	}
	if e.SMTPUTF8 {
		b.WriteString("smtputf8\n")
	}
	for _, r := range e.Recipients {
		b.WriteString("rcpt " + r.Address.Path())
		if r.Notify != 0 {
			b.WriteString(" NOTIFY=" + r.Notify.String())
		}
		if r.ORCPT != "" {
			b.WriteString(" ORCPT=" + r.ORCPT)
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	out := b.String()
	// What Encode writes, ParseEnvelope must read: a bad value (a CR in
	// ENVID, an over-long line) is refused here, not by the server later.
	if _, _, err := ParseEnvelope(bufio.NewReader(strings.NewReader(out))); err != nil {
		return nil, err
	}
	return []byte(out), nil
}

// ParseEnvelope reads the envelope part of a pickup file from r, up to and
// including the empty line that ends it, and returns it with the number of
// bytes it took (where the message starts). Anything it does not expect
// is an error wrapping ErrMalformed.
func ParseEnvelope(r *bufio.Reader) (*Envelope, int64, error) {
	var env Envelope
	var n int64
	seen := map[string]bool{}
	for lineNo := 1; ; lineNo++ {
		line, err := readLine(r)
		n += int64(len(line))
		if err != nil {
			return nil, n, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case lineNo == 1:
			if line != magic {
				return nil, n, fmt.Errorf("%w: first line is not %q", ErrMalformed, magic)
			}
			continue
		case line == "":
			if !seen["uid"] || !seen["sender"] || len(env.Recipients) == 0 {
				return nil, n, fmt.Errorf("%w: the envelope needs uid, sender and rcpt lines", ErrMalformed)
			}
			return &env, n, nil
		}
		key, value, _ := strings.Cut(line, " ")
		if key != "rcpt" && seen[key] {
			return nil, n, fmt.Errorf("%w: line %d: %s given twice", ErrMalformed, lineNo, key)
		}
		seen[key] = true
		if err := env.parseField(key, value); err != nil {
			return nil, n, fmt.Errorf("%w: line %d: %w", ErrMalformed, lineNo, err)
		}
	}
}

// readLine reads one line of at most maxLine bytes, with its newline.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxLine {
			return "", fmt.Errorf("%w: an envelope line is longer than %d bytes", ErrMalformed, maxLine)
		}
		switch {
		case err == nil:
			return string(b), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return "", fmt.Errorf("%w: the file ends inside the envelope", ErrMalformed)
		default:
			return "", fmt.Errorf("pickup: %w", err)
		}
	}
}

// parseField takes one envelope line but the first and the last.
func (e *Envelope) parseField(key, value string) error {
	if strings.ContainsAny(value, "\r\x00") {
		return errors.New("a CR or NUL byte")
	}
	switch key {
	case "uid":
		uid, err := strconv.ParseUint(value, 10, 31)
		if err != nil {
			return fmt.Errorf("uid: %w", err)
		}
		e.UID = int(uid)
	case "sender":
		a, rest, err := envelope.ParsePath(value, true, true)
		if err != nil || rest != "" {
			return fmt.Errorf("sender: not one path: %q", value)
		}
		e.Sender = a
	case "ret":
		switch r := envelope.Ret(value); r {
		case envelope.RetFull, envelope.RetHdrs:
			e.Ret = r
		default:
			return fmt.Errorf("ret: %q is not FULL or HDRS", value)
		}
	case "envid":
		if value == "" || len(value) > 100 || strings.ContainsAny(value, " \t=") {
			return fmt.Errorf("envid: %q is not an ENVID", value)
		}
		e.EnvID = value
	case "body":
		switch b := envelope.Body(value); b {
		case envelope.Body7Bit, envelope.Body8BitMIME, envelope.BodyBinaryMIME:
			e.Body = b
		default:
			return fmt.Errorf("body: %q is not 7BIT, 8BITMIME or BINARYMIME", value)
		}
	case "smtputf8":
		if value != "" {
			return errors.New("smtputf8 takes no value")
		}
		e.SMTPUTF8 = true
	case "rcpt":
		return e.parseRcpt(value)
	default:
		return fmt.Errorf("unknown field %q", key)
	}
	return nil
}

// parseRcpt takes a rcpt line's value: a path and NOTIFY= and ORCPT=.
func (e *Envelope) parseRcpt(value string) error {
	if len(e.Recipients) == MaxRecipients {
		return fmt.Errorf("more than %d recipients", MaxRecipients)
	}
	a, rest, err := envelope.ParsePath(value, false, true)
	if err != nil {
		return fmt.Errorf("rcpt: %w", err)
	}
	if a.Domain == "" {
		return fmt.Errorf("rcpt: %q has no domain", value)
	}
	r := envelope.Recipient{Address: a}
	for _, p := range strings.Fields(rest) {
		name, v, _ := strings.Cut(p, "=")
		switch {
		case name == "NOTIFY" && r.Notify == 0:
			if r.Notify, err = envelope.ParseNotify(v); err != nil {
				return fmt.Errorf("rcpt: %w", err)
			}
		case name == "ORCPT" && r.ORCPT == "" && v != "":
			r.ORCPT = v
		default:
			return fmt.Errorf("rcpt: unexpected %q", p)
		}
	}
	if rest != "" && !strings.HasPrefix(rest, " ") {
		return fmt.Errorf("rcpt: unexpected %q after the path", rest)
	}
	e.Recipients = append(e.Recipients, r)
	return nil
}
