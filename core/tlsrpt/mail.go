package tlsrpt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/textproto"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/envelope"
)

// message is the report mail of §5.3 to the addresses to: a
// multipart/report; report-type="tlsrpt" with a short text part and the
// gzipped report as application/tlsrpt+gzip named per §5.1, the
// TLS-Report-Domain and TLS-Report-Submitter fields, and TLS-Required: No
// (RFC 8689 §5: a report about broken TLS must get through).
func (r *Reporter) message(rep *report, to []string, now time.Time) ([]byte, error) {
	if _, err := envelope.ParseAddress(r.from); err != nil || !isASCII(r.from) || r.submitter == "" {
		return nil, fmt.Errorf("tlsrpt: from address %q cannot send reports", r.from)
	}
	if len(to) == 0 {
		return nil, errors.New("tlsrpt: report mail without recipients")
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	text, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=us-ascii"},
		"Content-Transfer-Encoding": {"7bit"},
	})
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: report mail: %w", err)
	}
	fmt.Fprintf(text, "This is an aggregate TLS report from %s for %s, %s UTC.\r\n",
		r.submitter, rep.domain, rep.DateRange.Start.Format(time.DateOnly))
	att, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/tlsrpt+gzip"},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": rep.filename})},
	})
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: report mail: %w", err)
	}
	writeBase64(att, rep.gz)
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("tlsrpt: report mail: %w", err)
	}

	var m bytes.Buffer
	field := func(name, value string) { m.WriteString(name + ": " + value + "\r\n") }
	field("From", r.from)
	field("To", strings.Join(to, ",\r\n "))
	field("Subject", "Report Domain: "+rep.domain+"\r\n Submitter: "+r.submitter+"\r\n Report-ID: <"+rep.ReportID+">")
	field("Date", now.Format(time.RFC1123Z))
	field("Message-ID", "<"+rep.ReportID+">")
	field("TLS-Report-Domain", rep.domain)
	field("TLS-Report-Submitter", r.submitter)
	field("TLS-Required", "No")
	field("Auto-Submitted", "auto-generated")
	field("MIME-Version", "1.0")
	field("Content-Type", `multipart/report; report-type="tlsrpt";`+"\r\n"+` boundary="`+mw.Boundary()+`"`)
	m.WriteString("\r\n")
	m.Write(body.Bytes())
	return m.Bytes(), nil
}

// writeBase64 writes b in base64 lines of 76 characters (RFC 2045 §6.8).
func writeBase64(w interface{ Write([]byte) (int, error) }, b []byte) {
	s := base64.StdEncoding.EncodeToString(b)
	for len(s) > 76 {
		fmt.Fprintf(w, "%s\r\n", s[:76])
		s = s[76:]
	}
	fmt.Fprintf(w, "%s\r\n", s)
}
