package sdk

// Address is a mailbox as plugins see it: local part and domain. The zero
// value is the null reverse-path <>.
type Address struct {
	Local  string
	Domain string
}

// String returns local@domain, or "" for the null path.
func (a Address) String() string {
	if a.Local == "" && a.Domain == "" {
		return ""
	}
	return a.Local + "@" + a.Domain
}

// HeaderField is one message header field.
type HeaderField struct {
	Name  string
	Value string
}

// Route overrides the next hop or transport of a delivery (predelivery only).
type Route struct {
	Transport string // "smtp", "lmtp", "maildir" or a plugin transport; "" = unchanged
	Via       string // host:port next hop; "" = MX look-up
}

// Effects are changes a hook asks for; the core applies them, independently
// of the verdict (DESIGN.md, Hook points). The host checks them first, the
// same way for every hook: an effect given at a stage that does not take
// it (see each field) is dropped with a warning in the gateway's log; an
// address that would not pass as a path on the wire (UTF-8 only in an
// SMTPUTF8 transaction, <> only as a sender) is the hook's failure, as an
// error would be (its on_error).
type Effects struct {
	AddHeaders    []HeaderField // data, predelivery: applied only if the message is finally accepted
	RemoveHeaders []string      // data, predelivery: drop these fields
	// Recipients (rcpt, data, predelivery): the recipient becomes these
	// (rcpt: an alias, a list), or the transaction's recipients do (data),
	// or the destination's recipients of a queued message do (predelivery:
	// those left out are finished without delivery, new ones added to the
	// message); empty = unchanged. A mailbox the transaction has already,
	// compared without case, is not added twice.
	Recipients []Address
	Sender     *Address // mail, data, predelivery: rewrite the envelope sender
	Body       []byte   // data, predelivery: replace the message
	// Notes (every stage) are for later hooks of the transaction to read
	// (Request.Notes) and for the logs. Keys are "<hook>/<name>": the host
	// puts a key that does not start with the hook's own name and "/"
	// under it. At most 1000 notes, keys of 200 bytes, values of 4096.
	Notes map[string]string
	Skip  []string // handlers to skip for the rest of the transaction
	Route *Route   // predelivery only
	// ReplyLines are the text lines of the reply to VRFY or EXPN (250) or
	// HELP (214) when a command-stage hook accepts them (one member per
	// line for EXPN).
	ReplyLines []string
}

// IsZero reports whether e asks for nothing.
func (e *Effects) IsZero() bool {
	return e == nil || (len(e.AddHeaders) == 0 && len(e.RemoveHeaders) == 0 &&
		len(e.Recipients) == 0 && e.Sender == nil && e.Body == nil &&
		len(e.Notes) == 0 && len(e.Skip) == 0 && e.Route == nil && len(e.ReplyLines) == 0)
}
