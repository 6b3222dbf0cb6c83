package smtp

import (
	"bufio"
	"strconv"
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// Reply is one SMTP reply: a code, an RFC 3463 enhanced status code and one
// or more lines of text. Every reply the server sends is a Reply.
type Reply struct {
	Code     int
	Enhanced sdk.EnhancedCode // zero: no enhanced code (greeting, EHLO)
	Lines    []string
}

// R builds a one-line reply with an enhanced code.
func R(code int, enhanced sdk.EnhancedCode, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// String renders the reply as it goes on the wire, without the final CRLF.
func (r Reply) String() string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	r.writeTo(w)
	w.Flush()
	return strings.TrimSuffix(b.String(), "\r\n")
}

// writeTo writes the reply with CRLF line endings; continuation lines use
// "code-". CR and LF inside a line are replaced so a reply never splits.
func (r Reply) writeTo(w *bufio.Writer) {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	for i, l := range lines {
		// The code, separator and enhanced code go straight into the
		// writer's buffer: no string is made for them.
		b := strconv.AppendInt(w.AvailableBuffer(), int64(r.Code), 10)
		if i == len(lines)-1 {
			b = append(b, ' ')
		} else {
			b = append(b, '-')
		}
		if !r.Enhanced.IsZero() {
			b = append(r.Enhanced.Append(b), ' ')
		}
		w.Write(b)
		if strings.ContainsAny(l, "\r\n") {
			l = strings.NewReplacer("\r", " ", "\n", " ").Replace(l)
		}
		w.WriteString(l)
		w.WriteString("\r\n")
	}
}

// Temporary reports a 4xx reply; Permanent a 5xx.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Error lets a Reply travel as an error (the client returns it for
// unexpected replies).
func (r Reply) Error() string { return "smtp: " + r.String() }
