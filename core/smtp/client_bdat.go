package smtp

// This file is the client's BDAT (RFC 3030 CHUNKING): the message in
// chunks of a known size, with no dot-stuffing and no end marker, which is
// what lets BODY=BINARYMIME content (NUL, bare CR and LF, lines of any
// length) through unchanged.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/mailgate/gateway/core/envelope"
)

// useBDAT says whether env's message goes with BDAT: a BINARYMIME one
// always (mailLine has checked that the server takes it), others when
// AlwaysBDAT is set and the server offers CHUNKING.
func (c *Client) useBDAT(env *envelope.Envelope) bool {
	if env.Body == envelope.BodyBinaryMIME {
		return true
	}
	_, ok := c.ext["CHUNKING"]
	return ok && c.opt.AlwaysBDAT
}

// sendBDAT runs the transaction with the message in BDAT chunks. Without
// pipelining each command waits for its reply. With it the first chunk
// goes out with MAIL and the RCPTs, and each later chunk before the
// previous one is answered (RFC 3030 §4.2 allows BDAT in a pipeline);
// LAST goes out only once every earlier chunk is accepted, so that its
// replies (one per recipient in LMTP) come after a transaction that is
// whole.
//
// A refused chunk ends the transaction: nothing more is sent, the replies
// to chunks already on their way are read (the server discards those
// chunks), and RSET follows, because the state after a refused BDAT is
// not defined. The refusal is then res.Data and the error.
func (c *Client) sendBDAT(ctx context.Context, res *Result, mail string, rcpts []string, ch *chunker, pipelined bool) error {
	if !pipelined {
		if ok, err := c.stepEnvelope(ctx, res, mail, rcpts); !ok {
			return err
		}
		return c.sendChunks(ctx, res, ch, 0, 1)
	}
	chunk, last, err := ch.next()
	if err != nil {
		return fmt.Errorf("smtp: reading the message: %w", err) // nothing sent yet
	}
	if err := c.writeEnvelope(ctx, mail, rcpts); err != nil {
		return err
	}
	if err := c.writeChunk(ctx, chunk, last); err != nil {
		return err
	}
	if err := c.flush(ctx); err != nil {
		return err
	}
	mailOK, accepted, err := c.readEnvelope(ctx, res)
	if err != nil {
		return err
	}
	if !mailOK || !accepted {
		// The server had no transaction for the chunk: it answers it
		// with one error and discards it.
		if res.Data, err = c.read(ctx); err != nil {
			return err
		}
		if res.Data.Code == 421 {
			return res.Data
		}
		if err := c.reset(ctx); err != nil {
			return err
		}
		if !mailOK {
			return res.Mail
		}
		return nil
	}
	if last {
		return c.endReplies(ctx, res)
	}
	return c.sendChunks(ctx, res, ch, 1, 2)
}

// sendChunks sends the rest of the message, pending chunks being on their
// way unanswered, and keeps at most window of them so.
func (c *Client) sendChunks(ctx context.Context, res *Result, ch *chunker, pending, window int) error {
	for {
		chunk, last, err := ch.next()
		if err != nil {
			// Replies may be on their way; a connection in an unknown
			// state is not kept.
			return c.fail(ctx, fmt.Errorf("smtp: reading the message: %w", err))
		}
		for ; last && pending > 0; pending-- {
			if err := c.chunkReply(ctx, res, pending); err != nil {
				return err
			}
		}
		if err := c.writeChunk(ctx, chunk, last); err != nil {
			return err
		}
		if err := c.flush(ctx); err != nil {
			return err
		}
		if last {
			return c.endReplies(ctx, res)
		}
		if pending++; pending == window {
			if err := c.chunkReply(ctx, res, pending); err != nil {
				return err
			}
			pending--
		}
	}
}

// chunkReply reads the reply to the oldest of the pending chunks not yet
// answered. A refusal ends the transaction (see sendBDAT): the others'
// replies are read, RSET is sent, and the refusal is returned.
func (c *Client) chunkReply(ctx context.Context, res *Result, pending int) error {
	r, err := c.read(ctx)
	if err != nil || r.Code/100 == 2 {
		return err
	}
	res.Data = r
	if r.Code == 421 {
		return r
	}
	for range pending - 1 {
		if _, err := c.read(ctx); err != nil {
			return err
		}
	}
	if err := c.reset(ctx); err != nil {
		return err
	}
	return r
}

// writeChunk buffers one BDAT command and its chunk.
func (c *Client) writeChunk(ctx context.Context, chunk []byte, last bool) error {
	line := "BDAT " + strconv.Itoa(len(chunk))
	if last {
		line += " LAST"
	}
	if err := c.write(ctx, line); err != nil {
		return err
	}
	if _, err := c.bw.Write(chunk); err != nil {
		return c.fail(ctx, err)
	}
	return nil
}

// chunks returns the chunker for body: its bytes as they are for a binary
// message, else with line endings made CRLF.
func (c *Client) chunks(body io.Reader, binary bool) *chunker {
	if c.chunkBuf == nil {
		c.chunkBuf = make([]byte, c.opt.ChunkSize)
	}
	if !binary {
		in := c.buffer()
		if c.crlfBuf == nil {
			c.crlfBuf = make([]byte, 0, 2*len(in)+2) // the most one read becomes
		}
		body = &crlfReader{r: body, in: in, buf: c.crlfBuf}
	}
	return &chunker{src: body, buf: c.chunkBuf}
}

// chunker cuts a message into chunks of len(buf) bytes, the last one
// shorter (or empty, when the message is a multiple of len(buf) bytes:
// "BDAT 0 LAST" is allowed).
type chunker struct {
	src io.Reader
	buf []byte
}

// next returns the next chunk, valid until the next call, and whether it
// is the last.
func (k *chunker) next() (chunk []byte, last bool, err error) {
	n, err := io.ReadFull(k.src, k.buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return k.buf[:n], true, nil
	}
	return k.buf[:n], false, err
}

// crlfReader is the content DATA carries without the dot-stuffing, for
// BDAT of a message that is not binary: every line ends in CRLF (a bare
// CR or LF becomes CRLF, as dotWriter does), the last one too.
type crlfReader struct {
	r   io.Reader
	in  []byte // read from r
	buf []byte // converted
	out []byte // the part of buf not returned yet
	cr  bool   // the last byte converted was a CR: its LF is still to come
	mid bool   // inside a line: bytes since the last line end
	err error  // r's, returned once out is empty
}

func (x *crlfReader) Read(p []byte) (int, error) {
	for len(x.out) == 0 {
		if x.err != nil {
			return 0, x.err
		}
		x.fill()
	}
	n := copy(p, x.out)
	x.out = x.out[n:]
	return n, nil
}

// fill reads from r and converts what it got into out.
func (x *crlfReader) fill() {
	if x.in == nil {
		x.in = make([]byte, 32<<10)
	}
	n, err := x.r.Read(x.in)
	out := x.convert(x.buf[:0], x.in[:n])
	if err != nil {
		if errors.Is(err, io.EOF) {
			switch {
			case x.cr:
				out = append(out, '\n')
			case x.mid:
				out = append(out, '\r', '\n')
			}
			x.cr, x.mid = false, false
		}
		x.err = err
	}
	x.buf, x.out = out, out
}

// convert appends p to dst with its line endings made CRLF.
func (x *crlfReader) convert(dst, p []byte) []byte {
	for len(p) > 0 {
		if x.cr {
			x.cr = false
			dst = append(dst, '\n')
			if p[0] == '\n' {
				p = p[1:]
			}
			continue
		}
		i := dotLineEnd(p)
		if i < 0 {
			dst = append(dst, p...)
			x.mid = true
			break
		}
		dst = append(dst, p[:i]...)
		dst = append(dst, '\r')
		x.mid = false
		if p[i] == '\r' {
			x.cr = true
		} else {
			dst = append(dst, '\n')
		}
		p = p[i+1:]
	}
	return dst
}
