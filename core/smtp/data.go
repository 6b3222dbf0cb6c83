package smtp

// This file is the strict DATA reader. Contract for the session:
//
//   - Only CR LF "." CR LF ends the data; at the very start of the data the
//     line "." CR LF does too (the CR LF before it is the one that ended the
//     DATA command). "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r" and
//     every other mix of bare CR, bare LF and dot never do, in either mode
//     (SMTP smuggling, CVE-2023-51764/51765/51766).
//   - A bare LF (not after CR) or bare CR (not before LF) is a bare line
//     ending. With FixBareLineEndings it is written as CR LF; otherwise the
//     read fails with ErrBareLineEnding.
//   - Dot-unstuffing: the first "." of every line is removed. A line starts
//     at the start of the data, after a real CR LF, and in fix mode also
//     after a bare CR or LF (which counts as a line ending everywhere except
//     for ending the data). So in fix mode "\r\n.\n" and "\n.\n" give an
//     empty line, "\n..x" gives ".x", and "\n.\r\n" gives an empty line.
//   - Limits count the content as Read returns it (CR LF endings, after
//     unstuffing). MaxSize: more than MaxSize bytes is ErrTooBig, and Read
//     never returns more than MaxSize bytes. MaxHeaderSize: more than that
//     many bytes before the first empty line is ErrHeaderTooBig (the CR LF
//     ending the last header line counts, the empty line does not; content
//     without an empty line is all header). The first failure wins.
//   - On a failure (bare line ending, a limit) the reader writes nothing
//     more but goes on consuming input up to the real end marker; only then
//     does Read return the error, so the session can reply and stay in
//     sync. It returns it on every later call; after the end marker with no
//     failure, io.EOF on every call.
//   - The reader consumes from the bufio.Reader exactly up to and including
//     the end marker: pipelined commands after it stay buffered for the
//     session. It never blocks for more input while it holds content for
//     the caller.
//   - An error from the underlying reader is returned as is (io.EOF before
//     the end marker becomes io.ErrUnexpectedEOF), on every later call too.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// DATA reader errors. The reader always consumes input up to the real end of
// data (CRLF.CRLF) before returning one of these, so the session can answer
// and the connection stays in sync.
var (
	ErrBareLineEnding = errors.New("smtp: bare CR or LF in message") // 550 5.5.2 (policy "reject")
	ErrTooBig         = errors.New("smtp: message too big")          // 552 5.3.4
	ErrHeaderTooBig   = errors.New("smtp: header section too big")   // 552 5.3.4
)

// DataReaderOptions are the limits of one DATA read.
type DataReaderOptions struct {
	MaxSize            int64 // bytes of content after dot-unstuffing; 0 = no limit
	MaxHeaderSize      int64 // bytes before the first empty line; 0 = no limit
	FixBareLineEndings bool  // convert a bare CR or LF to CRLF instead of ErrBareLineEnding
}

// dataState is where the reader is in the wire format.
type dataState uint8

const (
	// stateLineStart: at the start of the data or after a real CR LF; a
	// "." here may begin the end marker.
	stateLineStart dataState = iota
	// stateBareLineStart: after a bare CR or LF; a "." here is unstuffed
	// but never begins the end marker.
	stateBareLineStart
	// stateText: inside a line.
	stateText
	// stateCR: after a CR that did not follow a line-start "."; an LF makes
	// it a real line ending, anything else a bare CR.
	stateCR
	// stateDot: after "." at stateLineStart (the dot is dropped).
	stateDot
	// stateDotCR: after "." CR at stateLineStart; an LF ends the data.
	stateDotCR
	// stateEnd: the end marker has been consumed.
	stateEnd
)

var crlf = []byte("\r\n")

// DataReader reads message content after DATA's 354 until the line ".":
// only CRLF "." CRLF ends the data; a "." preceded or followed by a bare LF
// or bare CR never does. Leading dots are unstuffed. Read returns content
// with CRLF line endings. After io.EOF (clean end) or one of the errors
// above (input drained to the end marker), Read keeps returning that. An
// I/O error from the underlying reader is returned as is (the session ends).
// See the top of data.go for the exact rules.
type DataReader struct {
	br  *bufio.Reader
	opt DataReaderOptions

	state dataState
	fail  error // first failure; set: discarding until the end marker
	ioErr error // from br; final

	pend    []byte  // a line ending that did not fit in the caller's buffer
	pendBuf [2]byte // backing store of pend

	size      int64 // content bytes written
	header    int64 // header bytes written
	inBody    bool  // the empty line ending the header section was written
	lineEmpty bool  // nothing written since the last line ending
}

// NewDataReader returns a DataReader over br.
func NewDataReader(br *bufio.Reader, opt DataReaderOptions) *DataReader {
	return &DataReader{br: br, opt: opt, lineEmpty: true}
}

// Size returns the number of content bytes Read has returned so far (after
// dot-unstuffing, with CRLF line endings).
func (r *DataReader) Size() int64 { return r.size - int64(len(r.pend)) }

// Read implements io.Reader with the rules above.
func (r *DataReader) Read(p []byte) (int, error) {
	n := copy(p, r.pend)
	r.pend = r.pend[n:]
	for r.state != stateEnd && r.ioErr == nil && len(r.pend) == 0 {
		if r.fail == nil && (n == len(p) || n > 0 && r.br.Buffered() == 0) {
			return n, nil // full, or would block while holding content
		}
		if r.br.Buffered() == 0 {
			if _, err := r.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				r.ioErr = err
				break
			}
		}
		buf, _ := r.br.Peek(r.br.Buffered())
		var used int
		n, used = r.scan(p, n, buf)
		r.br.Discard(used) // cannot fail: used <= Buffered()
	}
	switch {
	case len(r.pend) > 0:
		return n, nil
	case r.ioErr != nil:
		return n, r.ioErr
	case r.state != stateEnd:
		return n, nil
	case r.fail != nil:
		return n, r.fail
	}
	return n, io.EOF
}

// scan runs the state machine over buf, writing content to p[n:], until
// buf is used up, p is full (unless discarding), a line ending went to
// r.pend, or the data ended. It returns the new n and the bytes of buf
// consumed.
func (r *DataReader) scan(p []byte, n int, buf []byte) (int, int) {
	i := 0
	nextCR, nextLF := -1, -1 // indexes in buf of the next CR and LF at or after i; len(buf) if none
	for i < len(buf) {
		c := buf[i]
		switch r.state {
		case stateLineStart, stateBareLineStart, stateText:
			switch {
			case c == '\r':
				r.state = stateCR
				i++
				continue
			case c == '\n':
				i++
				n = r.bare(p, n)
			case c == '.' && r.state == stateLineStart:
				r.state = stateDot
				i++
				continue
			case c == '.' && r.state == stateBareLineStart:
				r.state = stateText // unstuffed; never an end marker
				i++
				continue
			default:
				// A run of line content up to the next CR or LF,
				// bounded by the room left in p.
				end := len(buf)
				if r.fail == nil {
					if n == len(p) {
						return n, i
					}
					end = min(end, i+len(p)-n)
				}
				// Two vectorized searches, each at most once per byte of
				// buf; a byte loop is 3-4 times slower on 76-byte lines.
				if nextCR < i {
					nextCR = indexFrom(buf, i, '\r')
				}
				if nextLF < i {
					nextLF = indexFrom(buf, i, '\n')
				}
				j := min(nextCR, nextLF, end)
				if r.fail == nil {
					n = r.text(p, n, buf[i:j])
				}
				r.state = stateText
				i = j
				continue
			}
		case stateCR:
			if c == '\n' {
				i++
				n = r.eol(p, n)
				r.state = stateLineStart
			} else {
				n = r.bare(p, n) // c is looked at again, at a line start
			}
		case stateDot, stateDotCR:
			var used int
			var end bool
			n, used, end = r.dot(p, n, c)
			i += used
			if end {
				return n, i
			}
		}
		if len(r.pend) > 0 {
			return n, i
		}
	}
	return n, i
}

// dot steps the state machine on a line that began with a dot: c is the
// byte after the dot (stateDot) or after ".\r" (stateDotCR). It returns
// the new n, the bytes of input used (0: c is looked at again in the new
// state) and whether the data ended. Off the hot path: only lines that
// begin with a dot come here.
func (r *DataReader) dot(p []byte, n int, c byte) (int, int, bool) {
	if r.state == stateDotCR {
		if c == '\n' {
			r.state = stateEnd
			return n, 1, true
		}
		return r.bare(p, n), 0, false // ".\r" then not LF: an empty line, bare CR
	}
	switch c {
	case '\r':
		r.state = stateDotCR
		return n, 1, false
	case '\n':
		return r.bare(p, n), 1, false // ".\n": an unstuffed empty line
	}
	r.state = stateText // the dot was stuffing; c is content
	return n, 0, false
}

// indexFrom returns the index of the first c in b at or after i, or len(b).
func indexFrom(b []byte, i int, c byte) int {
	if k := bytes.IndexByte(b[i:], c); k >= 0 {
		return i + k
	}
	return len(b)
}

// bare handles a bare CR or LF: a line ending in fix mode, a failure
// otherwise. The reader goes to stateBareLineStart either way.
func (r *DataReader) bare(p []byte, n int) int {
	r.state = stateBareLineStart
	if !r.opt.FixBareLineEndings {
		r.failWith(ErrBareLineEnding)
		return n
	}
	return r.eol(p, n)
}

// eol writes a CR LF line ending, to r.pend what does not fit in p.
func (r *DataReader) eol(p []byte, n int) int {
	if r.fail != nil {
		return n
	}
	if !r.inBody {
		if r.lineEmpty {
			r.inBody = true // the empty line: not part of the header
		} else if !r.count(&r.header, r.opt.MaxHeaderSize, 2, ErrHeaderTooBig) {
			return n
		}
	}
	if !r.count(&r.size, r.opt.MaxSize, 2, ErrTooBig) {
		return n
	}
	r.lineEmpty = true
	w := copy(p[n:], crlf)
	if w < len(crlf) {
		r.pend = append(r.pendBuf[:0], crlf[w:]...)
	}
	return n + w
}

// text writes a run of line content (no CR or LF; it fits in p).
func (r *DataReader) text(p []byte, n int, b []byte) int {
	r.lineEmpty = false
	k := int64(len(b))
	// Whichever limit the run passes first fails (the header limit on a
	// tie, as in eol), wherever the run was cut by the caller's buffer.
	var err error
	if !r.inBody && r.opt.MaxHeaderSize > 0 && r.header+k > r.opt.MaxHeaderSize {
		k, err = r.opt.MaxHeaderSize-r.header, ErrHeaderTooBig
	}
	if r.opt.MaxSize > 0 && r.size+k > r.opt.MaxSize {
		k, err = r.opt.MaxSize-r.size, ErrTooBig
	}
	if err != nil {
		r.failWith(err)
	}
	if !r.inBody {
		r.header += k
	}
	r.size += k
	return n + copy(p[n:], b[:k])
}

// count adds k to *total; if that passes max (> 0) it fails with err and
// reports false, leaving *total unchanged.
func (r *DataReader) count(total *int64, max, k int64, err error) bool {
	if max > 0 && *total+k > max {
		r.failWith(err)
		return false
	}
	*total += k
	return true
}

// failWith records the first failure; from then on nothing is written.
func (r *DataReader) failWith(err error) {
	if r.fail == nil {
		r.fail = err
		r.pend = nil
	}
}
