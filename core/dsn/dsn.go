// Package dsn builds RFC 3464 delivery status notifications: bounces,
// delay warnings and success reports about one queued message, written as
// the RFC 3462 multipart/report to send to its envelope sender. It also
// holds the rules around them: which recipients want one (Wants, from
// NOTIFY) and the RFC 3463 status a reply stands for (StatusFromReply). It
// does no I/O but reading the original and writing the report, and holds
// no state.
package dsn

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

// Action is what happened to one recipient, as reported in a DSN
// (RFC 3464 §2.3.3).
type Action string

const (
	ActionFailed    Action = "failed"    // permanent failure, or retries gave up
	ActionDelayed   Action = "delayed"   // still being retried
	ActionDelivered Action = "delivered" // delivered to the final mailbox
	ActionRelayed   Action = "relayed"   // handed to a next hop that sends no DSNs
	ActionExpanded  Action = "expanded"  // delivered to an alias or list, which expanded it
)

// valid reports whether a is one of the five RFC 3464 actions.
func (a Action) valid() bool {
	switch a {
	case ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded:
		return true
	}
	return false
}

// DefaultMaxOriginal is the largest original message a DSN returns in full
// when Report.MaxOriginal is 0. A larger one is returned as its header section.
const DefaultMaxOriginal = 10 << 20

// maxHeaderSection bounds the header section of the original that a DSN
// returns. Longer header sections are cut at the last complete line.
const maxHeaderSection = 1 << 20

// Errors of Report.Build; callers branch on them with errors.Is.
var (
	// ErrNullSender: a DSN is never sent to the null reverse-path <>
	// (RFC 3461 §6.2), so there is nothing to address it to.
	ErrNullSender = errors.New("dsn: no DSN to the null reverse-path")
	// ErrInvalid is wrapped by every other validation error of Build.
	ErrInvalid = errors.New("dsn: invalid report")
)

// RecipientReport is the outcome for one recipient: one per-recipient block
// of the delivery-status part and one entry of the human explanation.
type RecipientReport struct {
	// Recipient is the final recipient. Its ORCPT, if any, becomes the
	// Original-Recipient field.
	Recipient envelope.Recipient
	Action    Action
	// Status is the RFC 3463 code, e.g. {5,1,1}. Zero means the default of
	// the action: 5.0.0 failed, 4.0.0 delayed, 2.0.0 otherwise.
	Status sdk.EnhancedCode
	// Diagnostic is the remote reply, e.g. "550 5.1.1 No such user", written
	// as "Diagnostic-Code: smtp; 550 5.1.1 No such user". "" = none.
	// Multi-line replies are expected joined by spaces; CR, LF and other
	// control characters are replaced by spaces.
	Diagnostic string
	// RemoteMTA is the host name or [ip] of the remote server; "" = none.
	RemoteMTA string
	// Local says Diagnostic is this gateway's own account, not a reply
	// from a server: it is written as "Diagnostic-Code: X-Gateway; …" and
	// introduced as ours in the human part.
	Local bool
	// LastAttempt becomes Last-Attempt-Date when nonzero.
	LastAttempt time.Time
	// WillRetryUntil becomes Will-Retry-Until when nonzero, for the delayed
	// action only (RFC 3464 §2.3.9).
	WillRetryUntil time.Time
}

// Report is one delivery status notification about one queued message. Build
// writes it; Build does not modify d.
//
// The layout is the RFC 3462 multipart/report with report-type
// delivery-status:
//
//  1. text/plain: a human explanation, one entry per recipient with its
//     diagnostic, and the queue ID.
//  2. message/delivery-status: the per-message fields (Reporting-MTA,
//     X-Gateway-Queue-ID, Original-Envelope-Id, Received-From-MTA,
//     Arrival-Date), then one block per recipient (Original-Recipient,
//     Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
//     Last-Attempt-Date, Will-Retry-Until), each field only when known.
//  3. The original: message/rfc822 with the whole message when any
//     recipient failed and RET is not HDRS, or when RET is FULL; otherwise
//     (RET=HDRS, or a delay or success report without RET=FULL)
//     text/rfc822-headers with only the header section. An original larger
//     than MaxOriginal falls back to its header section. No part 3 when
//     Original is nil.
//
// Lines end in CRLF and header fields are folded at spaces to stay within 78
// columns where possible. Everything is 7-bit unless something in it is not:
//
//   - a part with non-ASCII bytes declares Content-Transfer-Encoding: 8bit
//     (text/plain then says charset=utf-8), and so does the top-level
//     message, so the DSN must be sent with BODY=8BITMIME;
//   - a returned original with an 8-bit body declares 8bit; one with
//     Envelope.Body BINARYMIME is message/global in base64 (RFC 6532
//     §3.5), byte for byte, so that the report needs no BINARYMIME path;
//   - UTF-8 addresses and header fields use the RFC 6533 types:
//     Final-Recipient: utf-8; …, message/global-delivery-status,
//     message/global (or message/global-headers) for an original whose
//     header section is non-ASCII UTF-8. Such a DSN needs SMTPUTF8.
//
// The original is read into memory, at most max(MaxOriginal, 1 MiB) plus
// one byte of it (1 MiB when only the header section is wanted); a header
// section longer than 1 MiB is cut at its last complete line. Bare LF and
// bare CR in it become CRLF.
type Report struct {
	// ReportingMTA is our host name: Reporting-MTA and the default From.
	// Required.
	ReportingMTA string
	// From is the address of the From field; "" = MAILER-DAEMON@ReportingMTA.
	// It is shown as "Mail Delivery System <From>".
	From string
	// To is the envelope sender of the original message, whom the DSN goes
	// to. The null address means Envelope.Sender; if that is null too,
	// Build fails with ErrNullSender.
	To envelope.Address
	// Envelope is the original envelope; nil = unknown. Used: EnvID
	// (Original-Envelope-Id, decoded from xtext as RFC 3461 §6.3 asks), Ret,
	// ClientHELO and ClientIP (Received-From-MTA), Received (Arrival-Date),
	// Body (binary originals).
	Envelope *envelope.Envelope
	// QueueID is the original's queue ID, given in the human part and as
	// X-Gateway-Queue-ID in the per-message fields; "" = none.
	QueueID string
	// Reports has one entry per recipient reported on. At least one.
	Reports []RecipientReport
	// Original is the original message (header section and body); nil = do
	// not return it.
	Original io.Reader
	// MaxOriginal is the largest original returned in full; 0 =
	// DefaultMaxOriginal, negative = always the header section only.
	MaxOriginal int64
	// Now is the time of the report (Date, and the default Message-ID).
	Now time.Time
	// MessageID is the Message-ID of the DSN including its angle brackets;
	// "" = generated from Now and random bits.
	MessageID string
	// Boundary is the MIME boundary; "" = random. Set by tests for
	// reproducible output; it must be valid for multipart.Writer.SetBoundary.
	Boundary string
}

// Build writes the DSN message, RFC 5322 header section and MIME body, to w.
func (d *Report) Build(w io.Writer) error {
	if err := d.validate(); err != nil {
		return err
	}
	to := d.recipient()
	if to.IsNull() {
		return ErrNullSender
	}
	var env envelope.Envelope
	if d.Envelope != nil {
		env = *d.Envelope
	}
	host := message.OneLine(d.ReportingMTA)
	failed, delayed := false, false
	for _, r := range d.Reports {
		failed = failed || r.Action == ActionFailed
		delayed = delayed || r.Action == ActionDelayed
	}
	// The original, read first: its size decides what part 3 is.
	orig, err := d.loadOriginal(env, failed)
	if err != nil {
		return err
	}
	parts := []part{humanPart(d.humanText(host, failed, delayed, orig)), statusPart(d.statusText(host, env))}
	if orig.present {
		parts = append(parts, originalPart(orig, env))
	}

	bw := bufio.NewWriter(w)
	mw := multipart.NewWriter(bw)
	if d.Boundary != "" {
		if err := mw.SetBoundary(d.Boundary); err != nil {
			return fmt.Errorf("dsn: DSN boundary %q: %w", d.Boundary, err)
		}
	}
	d.writeHeader(bw, host, to, failed, delayed)
	writeField(bw, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+mw.Boundary()+`"`)
	if enc := topEncoding(parts); enc != "" {
		writeField(bw, "Content-Transfer-Encoding", enc)
	}
	bw.WriteString("\r\nThis is a MIME-encapsulated message.\r\n\r\n")
	for _, p := range parts {
		if err := writePart(mw, p.header, p.body); err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return fmt.Errorf("dsn: writing DSN: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("dsn: writing DSN: %w", err)
	}
	return nil
}

// SendEnvelope is the envelope to queue the report with, raw being what
// Build wrote: from the null sender (a DSN is never answered), to d.To (or
// the original's sender) with NOTIFY=NEVER, received at d.Now, with
// BODY=8BITMIME and, if the original or the address needed it, SMTPUTF8
// when raw is not ASCII. (A report is never binary: see originalPart.) A
// report about a REQUIRETLS message goes with REQUIRETLS, as it carries
// the original or its header (RFC 8689 §5).
func (d *Report) SendEnvelope(raw []byte) *envelope.Envelope {
	to := d.recipient()
	env := &envelope.Envelope{
		Recipients: []envelope.Recipient{{Address: to, Notify: envelope.NotifyNever}},
		Received:   d.Now,
		RequireTLS: d.Envelope != nil && d.Envelope.RequireTLS,
	}
	if isASCII(string(raw)) {
		return env
	}
	env.Body = envelope.Body8BitMIME
	env.SMTPUTF8 = (d.Envelope != nil && d.Envelope.SMTPUTF8) || !isASCII(to.String())
	return env
}

// recipient is whom the report goes to: To, else the original's sender
// (null if neither is known).
func (d *Report) recipient() envelope.Address {
	if d.To.IsNull() && d.Envelope != nil {
		return d.Envelope.Sender
	}
	return d.To
}

// loadOriginal reads d.Original (none when nil): the whole message when a
// recipient failed and RET is not HDRS, or when RET is FULL, else its
// header section.
func (d *Report) loadOriginal(env envelope.Envelope, failed bool) (original, error) {
	if d.Original == nil {
		return original{}, nil
	}
	full := env.Ret == envelope.RetFull || (failed && env.Ret != envelope.RetHdrs)
	limit := d.MaxOriginal
	if limit == 0 {
		limit = DefaultMaxOriginal
	}
	orig, err := readOriginal(d.Original, full, limit, env.Body == envelope.BodyBinaryMIME)
	if err != nil {
		return original{}, fmt.Errorf("dsn: reading the original message: %w", err)
	}
	return orig, nil
}

// writeHeader writes the report's own header fields up to MIME-Version.
func (d *Report) writeHeader(bw *bufio.Writer, host string, to envelope.Address, failed, delayed bool) {
	from := d.From
	if from == "" {
		from = "MAILER-DAEMON@" + host
	}
	msgID := d.MessageID
	if msgID == "" {
		msgID = "<" + d.Now.UTC().Format("20060102150405") + "." + rand.Text() + "@" + host + ">"
	}
	subject := "Successful Mail Delivery Report"
	switch {
	case failed:
		subject = "Undelivered Mail Returned to Sender"
	case delayed:
		subject = "Delayed Mail (still being retried)"
	}
	writeField(bw, "From", "Mail Delivery System <"+message.OneLine(from)+">")
	writeField(bw, "To", "<"+message.OneLine(to.String())+">")
	writeField(bw, "Subject", subject)
	writeField(bw, "Date", d.Now.Format(dateLayout))
	writeField(bw, "Message-ID", message.OneLine(msgID))
	writeField(bw, "Auto-Submitted", "auto-replied")
	writeField(bw, "MIME-Version", "1.0")
}

// part is one MIME part of the report.
type part struct {
	header textproto.MIMEHeader
	body   []byte
	enc    string // Content-Transfer-Encoding: "" (7bit), "8bit" or "base64"
}

// humanPart is part 1, the human explanation.
func humanPart(text []byte) part {
	return textPart("Notification", "text/plain; charset=us-ascii", "text/plain; charset=utf-8", text)
}

// statusPart is part 2, the machine-readable report.
func statusPart(text []byte) part {
	return textPart("Delivery report", "message/delivery-status", "message/global-delivery-status", text)
}

// textPart is a part of text generated here: of type ascii when it is
// 7-bit, else of type global in 8bit.
func textPart(description, ascii, global string, text []byte) part {
	p := part{header: textproto.MIMEHeader{}, body: text, enc: encodingOf(text)}
	p.header.Set("Content-Description", description)
	if p.enc == "" {
		p.header.Set("Content-Type", ascii)
	} else {
		p.header.Set("Content-Type", global)
		p.header.Set("Content-Transfer-Encoding", p.enc)
	}
	return p
}

// originalPart is part 3, the original whole or its header section.
func originalPart(orig original, env envelope.Envelope) part {
	p := part{header: textproto.MIMEHeader{}, body: orig.content()}
	p.enc = encodingOf(p.body)
	global := isUTF8(orig.header)
	switch {
	case orig.full && env.Body == envelope.BodyBinaryMIME:
		// message/rfc822 may not be encoded (RFC 2046 §5.2.1), and binary
		// needs a BINARYMIME path all the way back. message/global may be
		// base64 (RFC 6532 §3.5): byte for byte, over any path.
		p.header.Set("Content-Description", "Original message")
		p.header.Set("Content-Type", "message/global")
		p.enc, p.body = "base64", base64Lines(p.body)
	case orig.full && global:
		p.header.Set("Content-Description", "Original message")
		p.header.Set("Content-Type", "message/global")
	case orig.full:
		p.header.Set("Content-Description", "Original message")
		p.header.Set("Content-Type", "message/rfc822")
	case global:
		p.header.Set("Content-Description", "Original message headers")
		p.header.Set("Content-Type", "message/global-headers")
	default:
		p.header.Set("Content-Description", "Original message headers")
		p.header.Set("Content-Type", "text/rfc822-headers")
	}
	if p.enc != "" {
		p.header.Set("Content-Transfer-Encoding", p.enc)
	}
	return p
}

// base64Lines is b in base64, in lines of 76 characters ending in CRLF
// (RFC 2045 §6.8).
func base64Lines(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	out := make([]byte, 0, len(enc)+len(enc)/76*2+2)
	for len(enc) > 76 {
		out = append(out, enc[:76]...)
		out = append(out, "\r\n"...)
		enc = enc[76:]
	}
	return append(append(out, enc...), "\r\n"...)
}

// topEncoding is the Content-Transfer-Encoding of the whole report: the
// widest of its parts'.
func topEncoding(parts []part) string {
	top := ""
	for _, p := range parts {
		if p.enc == "8bit" {
			top = p.enc
		}
	}
	return top
}

// validate checks the fields Build cannot do without.
func (d *Report) validate() error {
	if message.OneLine(d.ReportingMTA) == "" {
		return fmt.Errorf("dsn: DSN without a reporting MTA: %w", ErrInvalid)
	}
	if len(d.Reports) == 0 {
		return fmt.Errorf("dsn: DSN without recipients: %w", ErrInvalid)
	}
	for i, r := range d.Reports {
		if !r.Action.valid() {
			return fmt.Errorf("dsn: DSN recipient %d: unknown action %q: %w", i, r.Action, ErrInvalid)
		}
		if c := r.Status[0]; !r.Status.IsZero() && c != 2 && c != 4 && c != 5 {
			return fmt.Errorf("dsn: DSN recipient %d: bad status %s: %w", i, r.Status, ErrInvalid)
		}
		if r.Recipient.Address.IsNull() {
			return fmt.Errorf("dsn: DSN recipient %d: null address: %w", i, ErrInvalid)
		}
	}
	return nil
}

// humanText is the text/plain part.
func (d *Report) humanText(host string, failed, delayed bool, orig original) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "This is the mail system at host %s.\r\n\r\n", host)
	switch {
	case failed:
		wrap(&b, "", "I'm sorry to have to inform you that your message could not be delivered to one or more recipients.")
	case delayed:
		wrap(&b, "", "Your message could not be delivered yet to one or more recipients. The mail system will keep trying; you do not need to send it again.")
	case d.relayed():
		wrap(&b, "", "Your message was delivered or relayed to the recipients listed below. Where it was relayed, no further success report will come, but a server further on may still report a failure.")
	default:
		wrap(&b, "", "Your message was delivered to the recipients listed below.")
	}
	if d.QueueID != "" {
		b.WriteString("\r\n")
		wrap(&b, "", "Its queue ID here was "+message.OneLine(d.QueueID)+"; please quote it if you contact the postmaster.")
	}
	b.WriteString("\r\n")
	for _, r := range d.Reports {
		line := "<" + message.OneLine(r.Recipient.Address.String()) + ">: " + actionText(r.Action) + " (" + reportStatus(r).String() + ")"
		if r.Action == ActionDelayed && !r.WillRetryUntil.IsZero() {
			line += "; the mail system will keep trying until " + r.WillRetryUntil.Format(dateLayout)
		}
		wrap(&b, "", line+".")
		if diag := message.OneLine(r.Diagnostic); diag != "" {
			said := "the remote server said: "
			switch mta := message.OneLine(r.RemoteMTA); {
			case r.Local:
				said = "the mail system here said: "
			case mta != "":
				said = "host " + mta + " said: "
			}
			wrap(&b, "    ", said+diag)
		}
		b.WriteString("\r\n")
	}
	switch {
	case !orig.present:
	case orig.full:
		b.WriteString("The original message is attached.\r\n")
	case orig.tooBig:
		wrap(&b, "", "The original message was too large to return in full; its header section is attached.")
	default:
		b.WriteString("The header section of the original message is attached.\r\n")
	}
	return b.Bytes()
}

// relayed reports whether a recipient's action is relayed: the message
// left for a server that sends no success reports (RFC 3461 §6.2.3).
func (d *Report) relayed() bool {
	for _, r := range d.Reports {
		if r.Action == ActionRelayed {
			return true
		}
	}
	return false
}

// actionText is how the human part words each action.
func actionText(a Action) string {
	switch a {
	case ActionFailed:
		return "delivery failed"
	case ActionDelayed:
		return "delivery delayed"
	case ActionRelayed:
		return "relayed to a server that sends no delivery reports"
	case ActionExpanded:
		return "delivered to an alias or list, which expanded it"
	}
	return "delivered"
}

// statusText is the message/delivery-status part.
func (d *Report) statusText(host string, env envelope.Envelope) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriter(&b)
	writeField(bw, "Reporting-MTA", "dns; "+host)
	if id := message.OneLine(d.QueueID); id != "" {
		writeField(bw, "X-Gateway-Queue-ID", id)
	}
	if env.EnvID != "" {
		writeField(bw, "Original-Envelope-Id", decodeXText(env.EnvID))
	}
	if from := receivedFrom(env); from != "" {
		writeField(bw, "Received-From-MTA", from)
	}
	if !env.Received.IsZero() {
		writeField(bw, "Arrival-Date", env.Received.Format(dateLayout))
	}
	for _, r := range d.Reports {
		bw.WriteString("\r\n")
		if orcpt := originalRecipient(r.Recipient.ORCPT); orcpt != "" {
			writeField(bw, "Original-Recipient", orcpt)
		}
		addr := message.OneLine(r.Recipient.Address.String())
		typ := "rfc822"
		if !isASCII(addr) {
			typ = "utf-8" // RFC 6533 §3
		}
		writeField(bw, "Final-Recipient", typ+"; "+addr)
		writeField(bw, "Action", string(r.Action))
		writeField(bw, "Status", reportStatus(r).String())
		if mta := message.OneLine(r.RemoteMTA); mta != "" {
			writeField(bw, "Remote-MTA", "dns; "+mta)
		}
		if diag := message.OneLine(r.Diagnostic); diag != "" {
			typ := "smtp; "
			if r.Local {
				typ = "X-Gateway; " // RFC 3464 §2.3.6: not a reply of a server
			}
			writeField(bw, "Diagnostic-Code", typ+diag)
		}
		if !r.LastAttempt.IsZero() {
			writeField(bw, "Last-Attempt-Date", r.LastAttempt.Format(dateLayout))
		}
		if r.Action == ActionDelayed && !r.WillRetryUntil.IsZero() {
			writeField(bw, "Will-Retry-Until", r.WillRetryUntil.Format(dateLayout))
		}
	}
	bw.Flush() // cannot fail: bytes.Buffer
	return b.Bytes()
}

// reportStatus is r.Status, or the default of r.Action when zero.
func reportStatus(r RecipientReport) sdk.EnhancedCode {
	if !r.Status.IsZero() {
		return r.Status
	}
	switch r.Action {
	case ActionFailed:
		return sdk.EnhancedCode{5, 0, 0}
	case ActionDelayed:
		return sdk.EnhancedCode{4, 0, 0}
	}
	return sdk.EnhancedCode{2, 0, 0}
}

// receivedFrom is the Received-From-MTA value: "dns; helo ([ip])" or
// "dns; helo"; "" (no field) when the client gave no domain name. The
// "dns" type names a domain (RFC 3464 §2.2.2), so an address literal or
// the client's free text does not go there; the address goes in the
// comment beside a name, as Postfix writes it.
func receivedFrom(env envelope.Envelope) string {
	helo, ip := message.OneLine(env.ClientHELO), message.OneLine(env.ClientIP)
	if !envelope.ValidHost(helo) || strings.HasPrefix(helo, "[") {
		return ""
	}
	if ip != "" {
		return "dns; " + helo + " ([" + ip + "])"
	}
	return "dns; " + helo
}

// originalRecipient is the Original-Recipient value for an ORCPT parameter
// "addr-type;xtext": "addr-type; address" with the address decoded from
// xtext (RFC 3461 §6.3). A value that is not of that form, or whose
// decoded address is not printable ASCII, is kept as received.
func originalRecipient(orcpt string) string {
	orcpt = message.OneLine(orcpt)
	typ, addr, ok := strings.Cut(orcpt, ";")
	if !ok {
		return orcpt
	}
	return strings.TrimSpace(typ) + "; " + decodeXText(strings.TrimSpace(addr))
}

// decodeXText decodes RFC 3461 xtext. It returns s unchanged (but cleaned)
// when s is not valid xtext or decodes to anything but printable ASCII, so
// that no control character reaches a header field.
func decodeXText(s string) string {
	s = message.OneLine(s)
	if strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '+' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(s) {
			return s
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		v := hi<<4 | lo
		if !ok1 || !ok2 || v < 0x20 || v > 0x7e {
			return s
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// Wants reports whether a recipient's NOTIFY parameter asks for a DSN with
// action a (RFC 3461 §4.1): NEVER never does; failed needs NOTIFY absent or
// FAILURE; delayed needs NOTIFY absent or DELAY; delivered, relayed and
// expanded need SUCCESS.
func Wants(n envelope.Notify, a Action) bool {
	if n&envelope.NotifyNever != 0 {
		return false
	}
	switch a {
	case ActionFailed:
		return n == 0 || n&envelope.NotifyFailure != 0
	case ActionDelayed:
		return n == 0 || n&envelope.NotifyDelay != 0
	case ActionDelivered, ActionRelayed, ActionExpanded:
		return n&envelope.NotifySuccess != 0
	}
	return false
}

// StatusFromReply is the RFC 3463 status for an SMTP reply: the enhanced
// code when the reply had one, else the class of the reply code (2xx →
// 2.0.0, 4xx → 4.0.0, 5xx → 5.0.0). An enhanced code whose class
// contradicts a 2xx/4xx/5xx reply code takes the reply's class (a 450 with
// 5.1.1 is 4.1.1): the reply code decides whether the failure is permanent.
// For any other code without an enhanced code the result is zero, which
// RecipientReport treats as the default of its action.
func StatusFromReply(code int, enhanced sdk.EnhancedCode) sdk.EnhancedCode {
	class := uint16(0)
	if c := code / 100; code >= 200 && code < 600 && c != 3 {
		class = uint16(c)
	}
	switch {
	case !enhanced.IsZero() && class != 0:
		enhanced[0] = class
		return enhanced
	case !enhanced.IsZero():
		return enhanced
	case class != 0:
		return sdk.EnhancedCode{class, 0, 0}
	}
	return sdk.EnhancedCode{}
}

// original is what part 3 returns.
type original struct {
	present bool
	header  []byte // header section, CRLF lines, without the empty line
	full    bool   // whole is returned (else header only)
	whole   []byte // the whole message, CRLF lines, when full
	tooBig  bool   // full was wanted but the message exceeds the limit
}

// content is the body of part 3.
func (o original) content() []byte {
	if o.full {
		return o.whole
	}
	return o.header
}

// readOriginal reads the original message: whole if wantFull and it has at
// most maxFull bytes, else its header section. The whole of a binary
// message is kept as it is; of another, bare CR and LF become CRLF.
func readOriginal(r io.Reader, wantFull bool, maxFull int64, binary bool) (original, error) {
	limit := int64(maxHeaderSection)
	if wantFull && maxFull > limit {
		limit = maxFull
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return original{}, err
	}
	truncated := int64(len(data)) > limit
	if truncated {
		data = data[:limit]
	}
	o := original{present: true}
	if wantFull && maxFull > 0 && !truncated && int64(len(data)) <= maxFull {
		o.full = true
		o.whole = data
		if !binary {
			o.whole = toCRLF(data)
		}
	}
	o.tooBig = wantFull && maxFull > 0 && !o.full

	// The header section ends at the first empty line. Without one, or
	// past maxHeaderSection, it is the complete lines read.
	head := data
	if len(head) > maxHeaderSection {
		head = head[:maxHeaderSection]
	}
	cut := truncated || len(head) < len(data)
	end := 0
	for i := 0; i < len(head); {
		j := bytes.IndexByte(head[i:], '\n')
		if j < 0 {
			if !cut {
				end = len(head) // the message ends in a line without a break
			}
			break
		}
		if len(bytes.TrimSuffix(head[i:i+j], []byte("\r"))) == 0 {
			break
		}
		i += j + 1
		end = i
	}
	o.header = toCRLF(data[:end])
	if len(o.header) > 0 && !bytes.HasSuffix(o.header, []byte("\r\n")) {
		o.header = append(o.header, '\r', '\n')
	}
	return o, nil
}

// toCRLF returns b with every bare LF and bare CR turned into CRLF.
func toCRLF(b []byte) []byte {
	bare := false
	for i, c := range b {
		if (c == '\n' && (i == 0 || b[i-1] != '\r')) || (c == '\r' && (i+1 == len(b) || b[i+1] != '\n')) {
			bare = true
			break
		}
	}
	if !bare {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\r' && i+1 < len(b) && b[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case c == '\r' || c == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

// dateLayout is the RFC 5322 date-time used for every date of a DSN.
const dateLayout = "Mon, 02 Jan 2006 15:04:05 -0700"

// maxLine is the column header fields are folded at when possible.
const maxLine = 78

// writeField writes "Name: value" and CRLF, folding at spaces to stay within
// maxLine columns where the value allows; a word longer than that stays on
// its own line. Unfolding (RFC 5322 §2.2.3, net/textproto) gives the value
// back exactly when it has no runs of spaces.
func writeField(w *bufio.Writer, name, value string) {
	w.WriteString(name)
	w.WriteByte(':')
	col := len(name) + 1
	for i, word := range strings.Split(value, " ") {
		if i > 0 && word != "" && col+1+len(word) > maxLine && col > len(name)+1 {
			w.WriteString("\r\n")
			col = 0
		}
		w.WriteByte(' ')
		w.WriteString(word)
		col += 1 + len(word)
	}
	w.WriteString("\r\n")
}

// writePart writes one MIME part.
func writePart(mw *multipart.Writer, h textproto.MIMEHeader, body []byte) error {
	pw, err := mw.CreatePart(h)
	if err != nil {
		return fmt.Errorf("dsn: writing DSN: %w", err)
	}
	if _, err := pw.Write(body); err != nil {
		return fmt.Errorf("dsn: writing DSN: %w", err)
	}
	return nil
}

// wrap writes s word-wrapped at 76 columns, each line prefixed by indent.
func wrap(b *bytes.Buffer, indent, s string) {
	const width = 76
	col := 0
	for _, word := range strings.Fields(s) {
		switch {
		case col == 0:
			b.WriteString(indent)
			col = len(indent)
		case col+1+len(word) > width:
			b.WriteString("\r\n")
			b.WriteString(indent)
			col = len(indent)
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	b.WriteString("\r\n")
}

// encodingOf is the Content-Transfer-Encoding b needs: "" (7bit) or "8bit".
func encodingOf(b []byte) string {
	if isASCII(string(b)) {
		return ""
	}
	return "8bit"
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isUTF8 reports whether b is non-ASCII UTF-8: an RFC 6532 header section.
func isUTF8(b []byte) bool { return !isASCII(string(b)) && utf8.Valid(b) }
