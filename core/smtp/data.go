package smtp

// This file is the strict DATA reader. Contract for the session:

import (
	"bufio"
	"errors"
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

// DataReader reads message content after DATA's 354 until the line ".":
// only CRLF "." CRLF ends the data; a "." preceded or followed by a bare LF
// or bare CR never does. Leading dots are unstuffed. Read returns content
// with CRLF line endings. After io.EOF (clean end) or one of the errors
// above (input drained to the end marker), Read keeps returning that. An
// I/O error from the underlying reader is returned as is (the session ends).
type DataReader struct {
	// fields private
	br  *bufio.Reader
	opt DataReaderOptions
}

// NewDataReader returns a DataReader over br.
func NewDataReader(br *bufio.Reader, opt DataReaderOptions) *DataReader {
	return &DataReader{br: br, opt: opt}
}

func (r *DataReader) Read(p []byte) (int, error) { panic("todo") }
