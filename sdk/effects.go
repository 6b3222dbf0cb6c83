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
// of the verdict (DESIGN.md, Hook points).
type Effects struct {
	AddHeaders    []HeaderField     // applied only if the message is finally accepted
	RemoveHeaders []string          // data, predelivery: drop these fields
	Recipients    []Address         // rcpt: the recipient becomes these; empty = unchanged
	Sender        *Address          // mail, predelivery: rewrite the envelope sender
	Body          []byte            // data, predelivery: replace the message
	Notes         map[string]string // keys "<hook>/<name>"
	Skip          []string          // handlers to skip for the rest of the transaction
	Route         *Route            // predelivery only
	// ReplyLines are the text lines of the 250 reply to VRFY or EXPN when a
	// command-stage hook accepts them (one member per line for EXPN).
	ReplyLines []string
}

// IsZero reports whether e asks for nothing.
func (e *Effects) IsZero() bool {
	return e == nil || (len(e.AddHeaders) == 0 && len(e.RemoveHeaders) == 0 &&
		len(e.Recipients) == 0 && e.Sender == nil && e.Body == nil &&
		len(e.Notes) == 0 && len(e.Skip) == 0 && e.Route == nil && len(e.ReplyLines) == 0)
}
