package message

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/mailgate/gateway/sdk"
)

// firstRead is how much parseHeader reads first when it does not know the
// size of the content; it doubles what it holds until the header section
// ends in it.
const firstRead = 1 << 10

// parseHeader is ParseHeader, and whether the header section ended as
// RFC 5322 has it: with an empty line or the end of the input. false
// means a line that is not a field ended it (" x", "bogus line", a line
// over MaxLine), where readers disagree: some take fields after it, which
// the ones who stopped never saw. Rewrite puts an empty line before such a
// line, so that all agree.
//
// It reads into one buffer (size+1 bytes when size, the content's, is
// known and small: the read that fills it sees the end too) and makes the
// fields from one copy of their bytes, each name and value a part of it
// (a folded value is a copy of its own): three allocations for most
// messages, where reading line by line made three a field.
func parseHeader(r io.Reader, size int64) (fields []sdk.HeaderField, headerLen int64, clean bool, err error) {
	n := firstRead
	if size > 0 && size < firstRead {
		n = int(size) + 1
	}
	buf := make([]byte, 0, n)
	for {
		buf, err = fill(buf, r)
		eof := errors.Is(err, io.EOF)
		if h, ok := headerEnd(buf, eof); ok {
			return h.fields(buf), int64(h.len), h.clean, nil
		}
		if err != nil && !eof {
			return nil, 0, false, err
		}
		buf = slices.Grow(buf, cap(buf))
	}
}

// fill reads from r into the spare capacity of buf until it is full or a
// read fails (io.EOF at the end of the input).
func fill(buf []byte, r io.Reader) ([]byte, error) {
	for empty := 0; len(buf) < cap(buf); {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
		if n > 0 {
			empty = 0
		} else if empty++; empty == 100 {
			return buf, io.ErrNoProgress
		}
	}
	return buf, nil
}

// headerSpan is where the header section of a buffer ends.
type headerSpan struct {
	end   int  // the end of the last field
	len   int  // the header section's length: end, and the empty line if one ended it
	n     int  // fields
	clean bool // parseHeader's clean
}

// headerEnd finds where the header section at the start of b ends, as the
// scanner does (next, line): the lines that are fields or continue one,
// then the line that ends it. It needs that line whole (or MaxLine+1 bytes
// of it): without it, and eof false (more may follow b), ok is false.
func headerEnd(b []byte, eof bool) (h headerSpan, ok bool) {
	for pos := 0; ; {
		line, ok := nextLine(b[pos:], eof)
		if !ok {
			return h, false
		}
		continues := h.n > 0 && len(line) > 0 && len(line) <= MaxLine && (line[0] == ' ' || line[0] == '\t')
		if _, _, field := fieldSyntax(line); continues || field {
			if !continues {
				h.n++
			}
			pos += len(line)
			continue
		}
		h.end, h.len = pos, pos
		switch string(line) {
		case "\r\n", "\n":
			h.len += len(line)
			h.clean = true
		case "": // the end of the input
			h.clean = true
		}
		return h, true
	}
}

// nextLine returns the line at the start of b with its line break; a line
// longer than MaxLine as its first MaxLine+1 bytes, which no field
// accepts; at the end of the input (eof) what is left, maybe "". ok is
// false when b ends before the line does.
func nextLine(b []byte, eof bool) (line []byte, ok bool) {
	look := b[:min(len(b), MaxLine+1)]
	if i := bytes.IndexByte(look, '\n'); i >= 0 {
		return b[:i+1], true
	}
	if len(b) > MaxLine || eof {
		return look, true
	}
	return nil, false
}

// fields returns the fields of the header section of b that h found, from
// one string of their bytes.
func (h headerSpan) fields(b []byte) []sdk.HeaderField {
	if h.n == 0 {
		return nil
	}
	s := string(b[:h.end])
	fields := make([]sdk.HeaderField, 0, h.n)
	for len(s) > 0 {
		first, end := fieldLen(s)
		name, at, _ := fieldStart(s[:first]) // headerEnd saw that it is one
		fields = append(fields, sdk.HeaderField{Name: name, Value: unfold(s[at:end])})
		s = s[end:]
	}
	return fields
}

// fieldLen returns the lengths of the field at the start of s, which
// holds only whole fields (headerEnd): of its first line, and of all its
// lines, the first and those that continue it.
func fieldLen(s string) (first, all int) {
	for {
		i := strings.IndexByte(s[all:], '\n')
		if i < 0 {
			all = len(s)
		} else {
			all += i + 1
		}
		if first == 0 {
			first = all
		}
		if all == len(s) || (s[all] != ' ' && s[all] != '\t') {
			return first, all
		}
	}
}
