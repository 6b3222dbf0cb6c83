package message

// This file counts the Received fields of a message: the hop count that
// the SMTP server (max_hops on arrival) and the delivery engine (before
// each attempt) use to detect mail loops.

import (
	"errors"
	"io"
)

// MaxHopScan bounds how much of a message CountHops reads: a header
// section longer than this is not read to its end.
const MaxHopScan = 1 << 20

// HopCounter counts the Received fields of a message's header section as
// the content streams past, without holding it: a small state machine over
// the starts of lines that keeps its place between writes, so a field name
// split across writes (or BDAT chunks) is still counted. A field counts
// when its name is "Received" in any case, optionally followed by blanks
// (obsolete syntax, RFC 5322 §4.5), then ':'. It stops at the first empty
// line: a "Received:" line in the body does not count. Unlike ParseHeader
// it keeps counting after a line that is not a field, which for loop
// detection errs on the side of more hops. The zero value is ready to use.
type HopCounter struct {
	state   hopState
	matched int // bytes of "received" matched so far
	n       int // Received fields seen
}

type hopState uint8

const (
	hopLineStart hopState = iota // at the start of a header line
	hopName                      // inside a field name that may be "Received"
	hopColon                     // after "Received": blanks, then ':'
	hopSkip                      // in the rest of a line
	hopBody                      // past the header section
)

const receivedField = "received" // lower case

// Hops returns the Received fields counted so far.
func (h *HopCounter) Hops() int { return h.n }

// Done reports whether the header section has ended: nothing more will be
// counted.
func (h *HopCounter) Done() bool { return h.state == hopBody }

// Write counts the Received fields in p, the next bytes of the message. It
// never fails.
func (h *HopCounter) Write(p []byte) (int, error) {
	for _, c := range p {
		if h.state == hopBody {
			break
		}
		h.step(c)
	}
	return len(p), nil
}

// step moves the state machine over one byte.
func (h *HopCounter) step(c byte) {
	switch h.state {
	case hopLineStart:
		switch {
		case c == '\n': // an empty line ends the header section
			h.state = hopBody
		case c == '\r':
		case c|0x20 == receivedField[0]: // c|0x20 lower-cases ASCII letters only
			h.state, h.matched = hopName, 1
		default: // another field, or a continuation line
			h.state = hopSkip
		}
	case hopName:
		switch {
		case c|0x20 == receivedField[h.matched]:
			if h.matched++; h.matched == len(receivedField) {
				h.state = hopColon
			}
		case c == '\n':
			h.state = hopLineStart
		default:
			h.state = hopSkip
		}
	case hopColon:
		switch c {
		case ':':
			h.n++
			h.state = hopSkip
		case ' ', '\t':
		case '\n':
			h.state = hopLineStart
		default:
			h.state = hopSkip
		}
	case hopSkip:
		if c == '\n' {
			h.state = hopLineStart
		}
	}
}

// CountHopsIn is CountHops over a message held in memory, read to the
// end of its header section (or MaxHopScan bytes) without a copy.
func CountHopsIn(msg []byte) int {
	var h HopCounter
	h.Write(msg[:min(len(msg), MaxHopScan)])
	return h.n
}

// CountHops reads the message at the start of r and returns the number of
// Received fields in its header section, as HopCounter counts them. It
// stops reading at the end of the header section, once the count passes
// limit (the result is then limit+1 or more), or after MaxHopScan bytes.
func CountHops(r io.Reader, limit int) (int, error) {
	var h HopCounter
	buf := make([]byte, 4096)
	for read := 0; read < MaxHopScan && !h.Done() && h.n <= limit; {
		n, err := r.Read(buf[:min(len(buf), MaxHopScan-read)])
		read += n
		h.Write(buf[:n])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return h.n, err
		}
	}
	return h.n, nil
}
