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
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/mailgate/gateway/sdk/jsonmail"
)

// Message returns the RFC 5322 message document d stands for, with CRLF
// line endings; hostname is for the Message-ID of a composed message.
func Message(d *jsonmail.Document, hostname string, now time.Time) ([]byte, error) {
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
	date, err := messageDate(d.Date, now)
	if err != nil {
		return nil, err
	}
	fields := []jsonmail.Header{
		{Name: "From", Value: from},
		{Name: "To", Value: to},
		{Name: "Subject", Value: mime.QEncoding.Encode("utf-8", d.Subject)},
		{Name: "Date", Value: date},
		{Name: "Message-ID", Value: "<" + randomID() + "@" + hostname + ">"},
		{Name: "MIME-Version", Value: "1.0"},
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
	if err := writeBody(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// messageDate returns the Date field of a composed message: the
// document's date, RFC 5322 as it is or RFC 3339 (as the webhook writes
// it) converted, or now when it has none.
func messageDate(date string, now time.Time) (string, error) {
	if date == "" {
		return now.Format(time.RFC1123Z), nil
	}
	if t, err := time.Parse(time.RFC3339, date); err == nil {
		return t.Format(time.RFC1123Z), nil
	}
	if _, err := mail.ParseDate(date); err != nil {
		return "", fmt.Errorf("inject: date %q: want RFC 3339 or RFC 5322", date)
	}
	return date, nil
}

// writeBody writes Content-Type and the body: text/plain, text/html,
// multipart/alternative for both, inside multipart/mixed with attachments.
func writeBody(b *bytes.Buffer, d *jsonmail.Document) error {
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
		if a.Omitted {
			return fmt.Errorf("inject: attachment %q was omitted by the webhook (max_attachment_size): its content is not in the document; send raw_base64 instead", a.Filename)
		}
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

// writeAlternative writes the text part(s) with their header. top says
// they are the message's whole body, which ends with a line break; inside
// a multipart a part ends where the boundary's line break starts, so that
// its text is the document's, no more.
func writeAlternative(b *bytes.Buffer, text, html string, top bool) error {
	switch {
	case html == "" || text == "":
		if html == "" {
			writeText(b, "text/plain", text)
		} else {
			writeText(b, "text/html", html)
		}
		if top && !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
			b.WriteString("\r\n")
		}
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

// writeText writes a quoted-printable UTF-8 part: header, empty line, body
// (with no line break after it that s does not have).
func writeText(b *bytes.Buffer, ct, s string) {
	fmt.Fprintf(b, "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", ct)
	qp := quotedprintable.NewWriter(b)
	qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")))
	qp.Close()
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
