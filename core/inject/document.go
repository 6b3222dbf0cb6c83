package inject

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
)

// Document is a message as JSON: the shape the webhook transport posts and
// the injection endpoint accepts. A document with RawBase64 is sent as it
// is; otherwise the message is built from the other fields.
type Document struct {
	ID          string       `json:"id,omitempty"` // ignored on input
	Envelope    Envelope     `json:"envelope"`
	Headers     []Header     `json:"headers,omitempty"` // extra header fields
	Subject     string       `json:"subject,omitempty"`
	From        string       `json:"from,omitempty"` // the From header; default: the envelope sender
	To          string       `json:"to,omitempty"`   // the To header; default: the envelope recipients
	Date        string       `json:"date,omitempty"` // RFC 5322; default: now
	Text        string       `json:"text,omitempty"`
	HTML        string       `json:"html,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	RawBase64   string       `json:"raw_base64,omitempty"` // the whole RFC 5322 message
}

// Envelope is the SMTP envelope of a document.
type Envelope struct {
	From     string   `json:"from"` // "" = the null sender <>
	To       []string `json:"to"`
	HELO     string   `json:"helo,omitempty"`      // output only
	ClientIP string   `json:"client_ip,omitempty"` // output only
}

// Header is one header field.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Attachment is one attached file.
type Attachment struct {
	Filename      string `json:"filename"`
	ContentType   string `json:"content_type,omitempty"` // default application/octet-stream
	Size          int64  `json:"size,omitempty"`         // output only
	ContentBase64 string `json:"content_base64"`
}

// Message returns the RFC 5322 message the document stands for, with CRLF
// line endings.
func (d *Document) Message(hostname string, now time.Time) ([]byte, error) {
	if d.RawBase64 != "" {
		raw, err := base64.StdEncoding.DecodeString(d.RawBase64)
		if err != nil {
			return nil, fmt.Errorf("inject: raw_base64: %w", err)
		}
		return raw, nil
	}
	var b bytes.Buffer
	field := func(name, value string) error {
		if strings.ContainsAny(name, "\r\n: ") || name == "" || strings.ContainsAny(value, "\r\n") {
			return fmt.Errorf("inject: bad header field %q", name)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", name, value)
		return nil
	}
	from := d.From
	if from == "" {
		from = "<" + d.Envelope.From + ">"
	}
	to := d.To
	if to == "" {
		to = strings.Join(d.Envelope.To, ", ")
	}
	date := d.Date
	if date == "" {
		date = now.Format(time.RFC1123Z)
	}
	fields := []Header{
		{"From", from}, {"To", to}, {"Subject", mime.QEncoding.Encode("utf-8", d.Subject)},
		{"Date", date}, {"Message-ID", "<" + randomID() + "@" + hostname + ">"}, {"MIME-Version", "1.0"},
	}
	// A document's own header fields (a webhook document lists them all)
	// replace the generated ones; the MIME structure is written below.
	for _, h := range d.Headers {
		switch strings.ToLower(h.Name) {
		case "mime-version", "content-type", "content-transfer-encoding":
			continue
		}
		replaced := false
		for i := range fields {
			if strings.EqualFold(fields[i].Name, h.Name) {
				fields[i].Value, replaced = h.Value, true
				break
			}
		}
		if !replaced {
			fields = append(fields, h)
		}
	}
	for _, h := range fields {
		if err := field(h.Name, h.Value); err != nil {
			return nil, err
		}
	}
	if err := d.writeBody(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeBody writes Content-Type and the body: text/plain, text/html,
// multipart/alternative for both, inside multipart/mixed with attachments.
func (d *Document) writeBody(b *bytes.Buffer) error {
	if len(d.Attachments) == 0 {
		return writeAlternative(b, d.Text, d.HTML, true)
	}
	mw := multipart.NewWriter(b)
	fmt.Fprintf(b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", mw.Boundary())
	var inner bytes.Buffer
	if err := writeAlternative(&inner, d.Text, d.HTML, false); err != nil {
		return err
	}
	hdr, body, _ := bytes.Cut(inner.Bytes(), []byte("\r\n\r\n"))
	pw, err := mw.CreatePart(partHeader(string(hdr)))
	if err != nil {
		return err
	}
	pw.Write(body)
	for _, a := range d.Attachments {
		content, err := base64.StdEncoding.DecodeString(a.ContentBase64)
		if err != nil {
			return fmt.Errorf("inject: attachment %q: %w", a.Filename, err)
		}
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", ct)
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
		h.Set("Content-Transfer-Encoding", "base64")
		pw, err := mw.CreatePart(h)
		if err != nil {
			return err
		}
		enc := base64.StdEncoding.EncodeToString(content)
		for len(enc) > 76 {
			fmt.Fprintf(pw, "%s\r\n", enc[:76])
			enc = enc[76:]
		}
		fmt.Fprintf(pw, "%s\r\n", enc)
	}
	return mw.Close()
}

// writeAlternative writes the text part(s) with their header. top says the
// header goes straight into the message header (no leading empty line).
func writeAlternative(b *bytes.Buffer, text, html string, top bool) error {
	switch {
	case html == "":
		writeText(b, "text/plain", text)
	case text == "":
		writeText(b, "text/html", html)
	default:
		mw := multipart.NewWriter(b)
		fmt.Fprintf(b, "Content-Type: multipart/alternative; boundary=%q\r\n\r\n", mw.Boundary())
		for _, p := range []struct{ ct, s string }{{"text/plain", text}, {"text/html", html}} {
			var part bytes.Buffer
			writeText(&part, p.ct, p.s)
			hdr, body, _ := bytes.Cut(part.Bytes(), []byte("\r\n\r\n"))
			pw, err := mw.CreatePart(partHeader(string(hdr)))
			if err != nil {
				return err
			}
			pw.Write(body)
		}
		return mw.Close()
	}
	return nil
}

// writeText writes a quoted-printable UTF-8 part: header, empty line, body.
func writeText(b *bytes.Buffer, ct, s string) {
	fmt.Fprintf(b, "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", ct)
	qp := quotedprintable.NewWriter(b)
	qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")))
	qp.Close()
	b.WriteString("\r\n")
}

// partHeader parses the "Name: value" lines of a part header we wrote.
func partHeader(s string) textproto.MIMEHeader {
	h := textproto.MIMEHeader{}
	for _, line := range strings.Split(s, "\r\n") {
		if name, value, ok := strings.Cut(line, ": "); ok {
			h.Add(name, value)
		}
	}
	return h
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
