package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/jsonmail"
)

// maxPartDepth bounds nested multiparts.
const maxPartDepth = 20

// newDocument parses the message of d into the JSON body of one webhook
// POST, the document the gateway's injection endpoint also reads.
func newDocument(d *sdk.Delivery, maxAttach int64, includeRaw bool) *jsonmail.Document {
	doc := &jsonmail.Document{
		ID: d.ID,
		Envelope: jsonmail.Envelope{
			From: d.Txn.Sender.String(),
			To:   make([]string, 0, len(d.Recipients)),
		},
		Headers:     []jsonmail.Header{},
		Attachments: []jsonmail.Attachment{},
	}
	for _, r := range d.Recipients {
		doc.Envelope.To = append(doc.Envelope.To, r.Address.String())
	}
	if includeRaw {
		doc.RawBase64 = base64.StdEncoding.EncodeToString(d.Content)
	}
	fields, body := splitHeader(d.Content)
	doc.Headers = append(doc.Headers, fields...)
	// The first Received field is the gateway's own; fields it puts above
	// it (Authentication-Results, DKIM-Signature, ARC sets) are skipped.
	for _, f := range fields {
		if strings.EqualFold(f.Name, "Received") {
			doc.Envelope.HELO, doc.Envelope.ClientIP = parseReceived(f.Value)
			break
		}
	}
	h := textproto.MIMEHeader{}
	for _, f := range fields {
		h.Add(f.Name, f.Value)
	}
	doc.Subject = decodeHeader(h.Get("Subject"))
	doc.From = decodeHeader(h.Get("From"))
	doc.To = decodeHeader(h.Get("To"))
	if t, err := mail.ParseDate(h.Get("Date")); err == nil {
		doc.Date = t.Format(time.RFC3339)
	}
	p := &parser{doc: doc, maxAttach: maxAttach}
	p.part(h, body, 0)
	return doc
}

type parser struct {
	doc       *jsonmail.Document
	maxAttach int64
}

// part adds one MIME entity to the document.
func (p *parser) part(h textproto.MIMEHeader, body []byte, depth int) {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mediaType, params = "application/octet-stream", nil
	}
	if strings.HasPrefix(mediaType, "multipart/") && params["boundary"] != "" && depth < maxPartDepth {
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			part, err := r.NextRawPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				p.note("a %s part did not parse: %v", mediaType, err)
				return
			}
			data, err := io.ReadAll(part)
			p.part(part.Header, data, depth+1) // what there is of it
			if err != nil {
				p.note("a %s part did not parse: %v", mediaType, err)
				return
			}
		}
	}
	data, err := decodeTransfer(h.Get("Content-Transfer-Encoding"), body)
	if err != nil {
		p.note("a %s part did not decode (%v); kept as it was", mediaType, err)
		data = body
	}
	disposition, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	filename = decodeHeader(filename)
	attachment := disposition == "attachment" || filename != ""
	if !attachment && (mediaType == "text/plain" && p.doc.Text == "" || mediaType == "text/html" && p.doc.HTML == "") {
		if s, ok := text(params["charset"], data); ok {
			s = strings.ReplaceAll(s, "\r\n", "\n")
			if mediaType == "text/plain" {
				p.doc.Text = s
			} else {
				p.doc.HTML = s
			}
			return
		}
		p.note("a %s part in charset %q is kept as an attachment", mediaType, params["charset"])
	}
	a := jsonmail.Attachment{Filename: filename, ContentType: ct, Size: int64(len(data))}
	if p.maxAttach > 0 && a.Size > p.maxAttach {
		a.Omitted = true
	} else {
		a.ContentBase64 = base64.StdEncoding.EncodeToString(data)
	}
	p.doc.Attachments = append(p.doc.Attachments, a)
}

func (p *parser) note(format string, a ...any) {
	p.doc.Notes = append(p.doc.Notes, fmt.Sprintf(format, a...))
}

// text returns data as a string when it is text the document can carry
// unchanged: UTF-8 or US-ASCII (or no charset) and valid UTF-8, or pure
// ASCII in another charset that agrees with ASCII. Other charsets are not
// converted.
func text(charset string, data []byte) (string, bool) {
	switch cs := strings.ToLower(charset); cs {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return string(data), utf8.Valid(data)
	case "utf-7", "utf-16", "utf-16le", "utf-16be", "utf-32", "utf-32le", "utf-32be":
		return "", false
	default:
		for _, c := range data {
			if c >= 0x80 || c == 0x1b { // 8-bit, or an ISO 2022 escape
				return "", false
			}
		}
		return string(data), true
	}
}

// decodeTransfer undoes a Content-Transfer-Encoding.
func decodeTransfer(cte string, body []byte) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, body)
		out, err := base64.StdEncoding.DecodeString(string(clean))
		if err != nil {
			out, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(string(clean), "="))
		}
		return out, err
	case "quoted-printable":
		return io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
	}
	return body, nil // 7bit, 8bit, binary, none
}

var wordDecoder = &mime.WordDecoder{}

// decodeHeader decodes RFC 2047 encoded words; a value it cannot decode
// (an unknown charset) is returned as it is.
func decodeHeader(s string) string {
	out, err := wordDecoder.DecodeHeader(s)
	if err != nil {
		return s
	}
	return out
}

// splitHeader splits a message into its header fields (continuation lines
// unfolded) and its body. A message without an empty line is all header.
func splitHeader(raw []byte) ([]jsonmail.Header, []byte) {
	var fields []jsonmail.Header
	rest := raw
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		var line []byte
		if i < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:i], rest[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return fields, rest
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].Value += " " + strings.TrimSpace(string(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue // not a header field: skipped
		}
		fields = append(fields, jsonmail.Header{Name: string(bytes.TrimSpace(name)), Value: strings.TrimSpace(string(value))})
	}
	return fields, nil
}

// receivedFrom reads the gateway's own Received field: "from HELO ([IP])",
// "([IPv6:IP])" or "(unknown)".
var receivedFrom = regexp.MustCompile(`^from (\S+) \((?:unknown|\[(?:IPv6:)?([^\]]+)\])\)`)

func parseReceived(v string) (helo, ip string) {
	m := receivedFrom.FindStringSubmatch(v)
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}
