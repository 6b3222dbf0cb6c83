// Package jsonmail owns the one JSON shape of a mail message that crosses
// the gateway's edges: the document the webhook plugin posts for each
// delivery, and the document the gateway's HTTP injection endpoint
// (POST /v1/messages) accepts. Both sides use these types, so what one
// writes the other reads. It holds the types only: the webhook parses a
// message into a Document, the injection endpoint composes one from it.
//
// Field order here is the order in the JSON. Fields marked "output only"
// are written by the webhook and ignored by the injection endpoint.
package jsonmail

// Document is a message as JSON. On input a document with RawBase64 is
// the message as it is; otherwise the message is composed from the other
// fields.
type Document struct {
	ID       string   `json:"id"`       // the queue ID of the message; output only
	Envelope Envelope `json:"envelope"` // the SMTP envelope of this delivery
	// Headers are every header field, in order, values unfolded and not
	// decoded. On input they are added to the composed message, replacing
	// its fields of the same name (From, To, Subject, Date, Message-ID);
	// MIME-Version, Content-Type and Content-Transfer-Encoding are left
	// out, since the composed body sets its own.
	Headers []Header `json:"headers"`

	// The main header fields, RFC 2047 encoded words decoded ("" when
	// absent). Date is RFC 3339 on output, "" when absent or unparsable;
	// on input it may be RFC 3339 or RFC 5322. On input an empty From is
	// the envelope sender, an empty To the envelope recipients, an empty
	// Date now.
	Subject string `json:"subject"`
	From    string `json:"from"`
	To      string `json:"to"`
	Date    string `json:"date"`

	// Text and HTML are the first text/plain and text/html parts that are
	// not attachments, transfer-decoded, in UTF-8 with LF line ends.
	Text string `json:"text"`
	HTML string `json:"html"`

	Attachments []Attachment `json:"attachments"` // every other leaf part, in order

	RawBase64 string `json:"raw_base64,omitempty"` // the whole RFC 5322 message (the webhook's include_raw)

	// Notes say where the document is not the message: a body part in a
	// charset other than UTF-8 or US-ASCII (kept as an attachment, bytes
	// unchanged), a part that did not decode. Output only.
	Notes []string `json:"notes,omitempty"`
}

// Envelope is the SMTP envelope.
type Envelope struct {
	From     string   `json:"from"`      // the envelope sender; "" for <>
	To       []string `json:"to"`        // the recipients of this delivery
	HELO     string   `json:"helo"`      // from the gateway's Received field; "" when unknown; output only
	ClientIP string   `json:"client_ip"` // likewise
}

// Header is one header field.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Attachment is a body part that is not the text or HTML of the message.
type Attachment struct {
	Filename      string `json:"filename"`                 // "" when the part has none
	ContentType   string `json:"content_type"`             // media type with its parameters; on input "" is application/octet-stream
	Size          int64  `json:"size"`                     // decoded size in bytes; output only
	ContentBase64 string `json:"content_base64,omitempty"` // the decoded content; absent when Omitted
	Omitted       bool   `json:"omitted,omitempty"`        // larger than the webhook's max_attachment_size; such a document cannot be composed
}
