// Package message reads and rewrites the header section of a message
// (RFC 5322) without holding the message: ParseHeader returns the fields,
// Rewrite streams a copy with fields added and removed, and View is the
// lazy, read-only look at a message that hooks get at the data and
// predelivery stages.
//
// The header section is the lines up to the first empty line (which belongs
// to it). A line that is neither a field ("name:" …, the name possibly
// empty) nor the continuation of one (it starts with a space or tab) also
// ends it, as in Postfix's cleanup: that line and everything after it are
// the body. So is a line longer than MaxLine, which no header field needs.
package message

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/mailgate/gateway/sdk"
)

// MaxLine is the longest header line the parsers look at (RFC 5322 allows
// 998 characters): a longer line starts the body.
const MaxLine = 64 << 10

var crlf = []byte("\r\n")

// ParseHeader reads the header section from r and returns its fields in
// order, with the names as written and the values unfolded (line breaks
// removed) and trimmed of blanks, and headerLen, the length in bytes of the
// header section including the empty line that ends it: the body starts at
// that offset. Lines that are not fields are left out. Only read errors are
// returned.
func ParseHeader(r io.Reader) (fields []sdk.HeaderField, headerLen int64, err error) {
	fields, headerLen, _, err = parseHeader(r, 0)
	return fields, headerLen, err
}

// Rewrite copies the message in src to dst with the fields of add first
// (a field whose name is not valid is left out, CR and LF in a value become
// spaces: AppendFields), then src's header section without the fields
// named in remove (case-insensitively, every occurrence), then the body as
// it is. Every line break of the output is CRLF: bare CR and bare LF become
// CRLF. When the header section was not ended by an empty line but by a
// line that is not a field, an empty line is put before that line. It holds
// one header field at a time, never the body.
func Rewrite(dst io.Writer, src io.Reader, add []sdk.HeaderField, remove []string) error {
	names := make(map[string]bool, len(remove))
	for _, n := range remove {
		names[strings.ToLower(strings.TrimSpace(n))] = true
	}
	return rewrite(dst, src, add, func(f *field) bool { return names[strings.ToLower(f.name)] })
}

// RewriteFunc is Rewrite with the fields to leave out chosen by drop,
// which sees each field of src's header section as ParseHeader returns it
// (the name as written, the value unfolded).
func RewriteFunc(dst io.Writer, src io.Reader, add []sdk.HeaderField, drop func(sdk.HeaderField) bool) error {
	return rewrite(dst, src, add, func(f *field) bool {
		return drop(sdk.HeaderField{Name: f.name, Value: unfold(f.raw[f.valueAt:])})
	})
}

func rewrite(dst io.Writer, src io.Reader, add []sdk.HeaderField, drop func(*field) bool) error {
	if len(add) > 0 {
		if _, err := dst.Write(AppendFields(nil, add)); err != nil {
			return err
		}
	}
	// Line breaks are made CRLF before parsing, so that the fields seen
	// are the fields written.
	hs := newScanner(newCRLFReader(src))
	fields := len(add) > 0
	for {
		f, err := hs.next()
		if err != nil {
			return err
		}
		if f == nil {
			break
		}
		if drop(f) {
			continue
		}
		if _, err := dst.Write(f.raw); err != nil {
			return err
		}
		fields = true
	}
	// What ended the header section, then the body. When that was not an
	// empty line but the body's first line, an empty line goes before it
	// (as Postfix's cleanup does): the line must not become part of the
	// header section.
	if fields && len(hs.rest) > 0 && string(hs.rest) != "\r\n" {
		if _, err := dst.Write(crlf); err != nil {
			return err
		}
	}
	if _, err := dst.Write(hs.rest); err != nil {
		return err
	}
	_, err := hs.br.WriteTo(dst)
	return err
}

// Replacement returns a reader of body as a whole message, as a hook's
// Effects.Body gives it: with a line break added at the end when its last
// line has none. Rewrite then makes every line break CRLF.
func Replacement(body []byte) io.Reader {
	r := bytes.NewReader(body)
	if n := len(body); n > 0 && body[n-1] != '\n' && body[n-1] != '\r' {
		return io.MultiReader(r, bytes.NewReader(crlf))
	}
	return r
}

// AppendFields appends fields to b as header lines: a field whose name is
// not valid (ValidFieldName) is left out, CR and LF in a value become
// spaces.
func AppendFields(b []byte, fields []sdk.HeaderField) []byte {
	for _, f := range fields {
		if !ValidFieldName(f.Name) {
			continue
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		for i := 0; i < len(f.Value); i++ {
			c := f.Value[i]
			if c == '\r' || c == '\n' {
				c = ' '
			}
			b = append(b, c)
		}
		b = append(b, crlf...)
	}
	return b
}

// TLSRequiredNo reports whether fields has "TLS-Required: No" (RFC 8689
// §5, any case): the sender asks that recipients' TLS policies (MTA-STS,
// DANE) not stop the message's delivery.
func TLSRequiredNo(fields []sdk.HeaderField) bool {
	for _, f := range fields {
		if strings.EqualFold(f.Name, "TLS-Required") && strings.EqualFold(strings.TrimSpace(f.Value), "No") {
			return true
		}
	}
	return false
}

// OneLine returns s fit for one header field value or reply line: control
// characters (CR and LF included) become spaces and the ends are trimmed,
// so that no value can break out of its field or line.
func OneLine(s string) string {
	bad := func(r rune) bool { return r < 0x20 || r == 0x7f }
	if strings.IndexFunc(s, bad) < 0 {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if bad(r) {
			return ' '
		}
		return r
	}, s))
}

// ValidFieldName reports whether n is a field name of RFC 5322 §3.6.8
// (ftext: printable ASCII but ':'), at most 76 characters.
func ValidFieldName(n string) bool {
	if n == "" || len(n) > 76 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// field is one header field as it stands in the message.
type field struct {
	name    string // as written, without blanks before the colon
	raw     []byte // every line of the field, line breaks included
	valueAt int    // offset in raw just past the colon
}

// scanner splits a header section into fields.
type scanner struct {
	br      *bufio.Reader
	n       int64  // bytes of the header section so far
	pending []byte // the line read after the current field, not yet placed
	rest    []byte // what ended the header section: the empty line or the body's first line
	done    bool
}

// newScanner reads r through a small buffer: line copies its fragments
// out, so a buffer need not hold a whole line, and a large one per parse
// (one per hook call that reads headers) costs more to zero than to use.
func newScanner(r io.Reader) *scanner {
	return &scanner{br: bufio.NewReaderSize(r, 4<<10)}
}

// next returns the next field; nil at the end of the header section, when
// rest holds what ended it.
func (s *scanner) next() (*field, error) {
	if s.done {
		return nil, nil
	}
	line := s.pending
	s.pending = nil
	if line == nil {
		var err error
		if line, err = s.line(); err != nil {
			return nil, err
		}
	}
	var f *field
	if name, at, ok := fieldStart(line); ok {
		f = &field{name: name, raw: line, valueAt: at}
	} else {
		s.end(line)
		return nil, nil
	}
	s.n += int64(len(line))
	for {
		line, err := s.line()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 || (line[0] != ' ' && line[0] != '\t') || len(line) > MaxLine {
			s.pending = line
			return f, nil
		}
		f.raw = append(f.raw, line...)
		s.n += int64(len(line))
	}
}

// end records the line that ended the header section: an empty line is
// part of it, anything else is the start of the body.
func (s *scanner) end(line []byte) {
	s.done, s.rest = true, line
	if string(line) == "\r\n" || string(line) == "\n" {
		s.n += int64(len(line))
	}
}

// line reads one line with its line break ("" at the end of the input).
// A line longer than MaxLine comes back as its first MaxLine+1 bytes,
// which no field accepts.
func (s *scanner) line() ([]byte, error) {
	var line []byte
	for {
		frag, err := s.br.ReadSlice('\n')
		line = append(line, frag...)
		switch {
		case err == nil, errors.Is(err, io.EOF):
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(line) > MaxLine {
				return line, nil
			}
		default:
			return nil, err
		}
	}
}

// fieldStart parses the first line of a field: the name, blanks (obsolete
// syntax, RFC 5322 §4.5), the colon. at is the offset after the colon.
//
// The name may be empty (": x"). RFC 5322 wants one character at least,
// but lenient readers downstream (Python's email package takes
// "[\x21-\x39\x3b-\x7e]*:" as a field, go-msgauth's DKIM verifier
// any line up to the empty one) read on past such a line: were it the start of
// the body here, the fields after it (a From: for DMARC, a forged
// Authentication-Results) would reach them unseen by the checks. So it
// is a field with an empty name, which no one asks for by name.
func fieldStart[T ~string | ~[]byte](line T) (name string, at int, ok bool) {
	n, at, ok := fieldSyntax(line)
	if !ok {
		return "", 0, false
	}
	return string(line[:n]), at, true
}

// fieldSyntax is fieldStart without making the name: its length.
func fieldSyntax[T ~string | ~[]byte](line T) (nameLen, at int, ok bool) {
	if len(line) > MaxLine || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return 0, 0, false
	}
	i := 0
	for i < len(line) && line[i] > 32 && line[i] < 127 && line[i] != ':' {
		i++
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j == len(line) || line[j] != ':' {
		return 0, 0, false
	}
	return i, j + 1, true
}

// unfold removes the line breaks (every CR and LF) of a field's value and
// trims blanks; a value that is not valid UTF-8 and has a line break gets
// U+FFFD for each invalid byte (bytes.Map's doing, kept). A string
// value whose only line break ends it, the common case, comes back as a
// part of it, not a copy.
func unfold[T ~string | ~[]byte](v T) string {
	s := string(v) // no copy for a string
	last := strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	if len(last) == len(s) || strings.ContainsAny(last, "\r\n") || !utf8.ValidString(last) {
		if strings.ContainsAny(s, "\r\n") {
			s = strings.Map(func(r rune) rune {
				if r == '\r' || r == '\n' {
					return -1
				}
				return r
			}, s)
		}
	} else {
		s = last
	}
	return strings.Trim(s, " \t")
}

// crlfReader reads r with every bare CR and bare LF turned into CRLF,
// also across reads and at the very end.
type crlfReader struct {
	r      io.Reader
	in     []byte // read buffer
	buf    []byte // converted bytes' backing array
	out    []byte // converted bytes not yet returned (in buf)
	prevCR bool   // the last byte read was a CR
	err    error  // r's error, returned once out is empty
}

func newCRLFReader(r io.Reader) *crlfReader {
	return &crlfReader{r: r, in: make([]byte, 16<<10)}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			if !c.prevCR {
				return 0, c.err
			}
			c.prevCR = false // a CR at the very end
			c.buf = append(c.buf[:0], '\n')
			c.out = c.buf
			break
		}
		n, err := c.r.Read(c.in)
		c.err = err
		c.buf = c.buf[:0]
		for _, b := range c.in[:n] {
			switch {
			case c.prevCR && b != '\n': // the CR before b was bare
				c.buf = append(c.buf, '\n')
			case b == '\n' && !c.prevCR:
				c.buf = append(c.buf, '\r')
			}
			c.buf = append(c.buf, b)
			c.prevCR = b == '\r'
		}
		c.out = c.buf
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}
