package arc

import (
	"bytes"
	"strings"
)

// field is one header field as it appears in the message: raw holds the
// name, the colon, the value and every continuation line, with the line
// endings as received; value is what follows the colon, unfolded lines
// included.
type field struct {
	name  string // as written; compare with strings.EqualFold
	raw   []byte
	value string
}

// splitMessage cuts a message into its header fields and its body. Lines
// may end in CRLF or a bare LF. A line in the header that is neither a
// field nor a continuation becomes a field without a name, so it is never
// selected. Without a blank line the whole message is header.
func splitMessage(msg []byte) ([]field, []byte) {
	var fields []field
	pos := 0
	for pos < len(msg) {
		eol := bytes.IndexByte(msg[pos:], '\n')
		next := len(msg)
		if eol >= 0 {
			next = pos + eol + 1
		}
		line := msg[pos:next]
		if isBlankLine(line) {
			return fields, msg[next:]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			f := &fields[len(fields)-1]
			f.raw = msg[pos-len(f.raw) : next]
			f.value += string(line)
		} else {
			fields = append(fields, newField(line))
		}
		pos = next
	}
	return fields, nil
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

func newField(line []byte) field {
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return field{raw: line}
	}
	name := strings.TrimRight(string(line[:colon]), " \t")
	return field{name: name, raw: line, value: string(line[colon+1:])}
}

// relaxedHeader canonicalizes a field as RFC 6376 §3.4.2 says: the name in
// lower case, the value unfolded, runs of whitespace made one space, and
// whitespace around the colon and at the end removed; with CRLF.
func relaxedHeader(name, value string) string {
	var b strings.Builder
	b.Grow(len(name) + len(value) + 3)
	b.WriteString(strings.ToLower(strings.TrimSpace(name)))
	b.WriteByte(':')
	space, started := false, false
	for i := 0; i < len(value); i++ {
		switch c := value[i]; c {
		case '\r', '\n':
		case ' ', '\t':
			space = true
		default:
			if space && started {
				b.WriteByte(' ')
			}
			space, started = false, true
			b.WriteByte(c)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// simpleHeader is RFC 6376 §3.4.1: the field unchanged, line ends made CRLF.
func simpleHeader(raw []byte) string {
	return string(toCRLF(raw))
}

// relaxedBody canonicalizes a body as RFC 6376 §3.4.4 says: whitespace at
// the ends of lines removed, runs of whitespace made one space, empty lines
// at the end removed, every line ended with CRLF. An empty body stays empty.
func relaxedBody(body []byte) []byte {
	out := make([]byte, 0, len(body)+2)
	blank := 0 // empty lines held back: they count only if text follows
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(bytes.TrimSuffix(line, []byte("\r")), " \t")
		if len(line) == 0 {
			blank++
			continue
		}
		for ; blank > 0; blank-- {
			out = append(out, '\r', '\n')
		}
		out = appendCollapsed(out, line)
		out = append(out, '\r', '\n')
	}
	return out
}

// appendCollapsed appends line with each run of spaces and tabs made one space.
func appendCollapsed(out, line []byte) []byte {
	space := false
	for _, c := range line {
		if c == ' ' || c == '\t' {
			space = true
			continue
		}
		if space {
			out = append(out, ' ')
			space = false
		}
		out = append(out, c)
	}
	return out
}

// simpleBody is RFC 6376 §3.4.3: empty lines at the end removed and the
// body ended with exactly one CRLF (an empty body is a single CRLF).
func simpleBody(body []byte) []byte {
	b := toCRLF(body)
	for bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		b = b[:len(b)-2]
	}
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b[:len(b):len(b)], '\r', '\n')
	}
	if len(b) == 2 {
		return []byte("\r\n")
	}
	return b
}

// toCRLF makes every bare LF a CRLF; input that has none is returned as is.
func toCRLF(b []byte) []byte {
	bare := false
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			bare = true
			break
		}
	}
	if !bare {
		return b
	}
	out := make([]byte, 0, len(b)+len(b)/32)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
