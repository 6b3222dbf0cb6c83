package smtp

// This file is the outbound SMTP client: `gateway send`, `gateway bench` and
// the delivery transports build on it. It also speaks LMTP (RFC 2033) when
// ClientOptions.LMTP is set, and sends the message with BDAT (RFC 3030, in
// client_bdat.go) when it must or is told to. One Client is one connection;
// it is not safe for concurrent use.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// Client errors. A reply the client did not expect is returned as a Reply
// (which implements error), so callers can ask Temporary() or Permanent().
var (
	// ErrBadCommand is wrapped when a command would carry CR, LF or NUL, or a
	// parameter value would carry a space or control byte. Nothing is sent.
	ErrBadCommand = errors.New("smtp: bad command line")
	// ErrMalformedReply is wrapped by every reply parse error (bad code,
	// inconsistent codes, line or reply too long). The connection is closed.
	ErrMalformedReply = errors.New("smtp: malformed reply")
	// ErrNotOffered is wrapped when StartTLS or Auth is called but the server
	// did not offer the extension in its EHLO reply.
	ErrNotOffered = errors.New("smtp: extension not offered")
	// ErrSMTPUTF8Unsupported is wrapped when the envelope needs SMTPUTF8 and
	// the server does not offer it. The error also unwraps to a Reply
	// 553 5.6.7, so it counts as permanent (RFC 6531 §3.2).
	ErrSMTPUTF8Unsupported = errors.New("smtp: server does not support SMTPUTF8")
	// ErrBinaryMIMEUnsupported is wrapped when the envelope has
	// BODY=BINARYMIME and the server does not offer both CHUNKING and
	// BINARYMIME (RFC 3030 §3): binary content cannot go as it is. Nothing
	// is sent. The error also unwraps to a Reply 554 5.6.3, so it counts
	// as permanent.
	ErrBinaryMIMEUnsupported = errors.New("smtp: server does not accept binary content (CHUNKING and BINARYMIME)")
	// ErrRequireTLSUnsupported is wrapped when the envelope has REQUIRETLS
	// and the server does not offer it, or offers it over a connection
	// that is not under TLS (RFC 8689 §4.2.1): the message must not go
	// there. Nothing is sent. The error also unwraps to a Reply
	// 550 5.7.30, so it counts as permanent.
	ErrRequireTLSUnsupported = errors.New("smtp: server does not support REQUIRETLS")
)

const (
	// clientMaxReplyLine bounds one reply line including its CRLF; RFC 5321 asks
	// for 512, real servers stay well below this.
	clientMaxReplyLine = 4096
	// clientMaxReplyLines bounds the lines of one multi-line reply, so a hostile
	// server cannot make the client buffer without end.
	clientMaxReplyLines = 128

	clientDefaultTimeout   = 5 * time.Minute
	clientDefaultName      = "localhost"
	clientDefaultChunkSize = 256 << 10
)

// clientAbortDeadline is a deadline in the past: setting it aborts blocked I/O.
var clientAbortDeadline = time.Unix(1, 0)

// ClientOptions configure a Client.
type ClientOptions struct {
	LocalName    string        // EHLO/HELO argument; default "localhost"
	Timeout      time.Duration // per command and per read or write of message data; default 5m
	Log          *slog.Logger  // commands and replies at debug level (AUTH data masked); nil: discard
	NoPipelining bool          // never pipeline, even when the server offers PIPELINING
	// LMTP speaks LMTP (RFC 2033) instead of SMTP: LHLO in place of EHLO,
	// with no HELO fallback, and after the message one reply per accepted
	// recipient (Result.DataPerRcpt).
	LMTP bool
	// AlwaysBDAT sends every message with BDAT (RFC 3030) when the server
	// offers CHUNKING. Without it only BODY=BINARYMIME messages go with
	// BDAT, which they always do: DATA cannot carry them.
	AlwaysBDAT bool
	// ChunkSize is the most bytes one BDAT chunk carries; default 256 KiB.
	ChunkSize int
	// TLSHandshakes counts StartTLS's handshakes; nil: not counted.
	TLSHandshakes *TLSCounter
}

// Client is one outbound SMTP connection. It is not safe for concurrent use.
type Client struct {
	conn net.Conn // the TLS connection after StartTLS
	br   *bufio.Reader
	bw   *bufio.Writer
	opt  ClientOptions
	log  *slog.Logger
	host string // server host from Dial: the default TLS ServerName

	didHello bool
	ext      map[string]string // EHLO keyword (upper case) → parameters; empty after HELO
	err      error             // sticky: the connection is unusable (closed)
	closed   bool
	debug    bool // log commands and replies (decided per operation)
	copyBuf  []byte
	chunkBuf []byte // one BDAT chunk, made when first needed
	crlfBuf  []byte // crlfReader's output, made when first needed

	// Per operation: the ctx deadline and whether ctx was cancelled. Every
	// read and write of the connection sets the conn deadline from these.
	deadline time.Time
	aborted  atomic.Bool
}

// Result is the outcome of one transaction.
type Result struct {
	Mail  Reply   // reply to MAIL FROM
	Rcpts []Reply // one per env.Recipients, in order (zero Reply: never answered)
	// Data is the final reply after the message, or the reply to DATA (with
	// BDAT: to the chunk) that refused it. In LMTP mode, after the message,
	// it is the first of the per-recipient replies (DataPerRcpt's first
	// non-zero entry).
	Data Reply
	// DataPerRcpt is set in LMTP mode once the message was sent: one entry
	// per env.Recipients, in order, holding the reply the server gave for
	// that recipient after the message (RFC 2033 §4.2). The entry is the
	// zero Reply for a recipient whose RCPT was refused, and for accepted
	// recipients left unanswered when the session ended early (an I/O error
	// or a 421). Nil in SMTP mode and when the message was not sent.
	DataPerRcpt []Reply
	// ID is the server's queue ID, from "queued as X" in Data (in LMTP mode
	// the first successful per-recipient reply), if present.
	ID string
}

// Dial connects to addr (host:port), reads the greeting and returns the
// client. A greeting that is not 2xx is returned as a Reply error.
func Dial(ctx context.Context, addr string, opt ClientOptions) (*Client, error) {
	opt = opt.withDefaults()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: dial %s: %w", addr, err)
	}
	d := net.Dialer{Timeout: opt.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	c, err := newClient(ctx, conn, opt)
	if err != nil {
		return nil, err
	}
	c.host = host
	return c, nil
}

// NewClient reads the greeting on conn and returns the client; the client
// owns conn from then on, and conn is closed if NewClient fails. A greeting
// that is not 2xx is returned as a Reply error.
func NewClient(ctx context.Context, conn net.Conn, opt ClientOptions) (*Client, error) {
	return newClient(ctx, conn, opt.withDefaults())
}

func newClient(ctx context.Context, conn net.Conn, opt ClientOptions) (*Client, error) {
	c := &Client{conn: conn, opt: opt, log: opt.Log, ext: map[string]string{}}
	c.br = bufio.NewReaderSize(clientIO{c}, clientMaxReplyLine)
	c.bw = bufio.NewWriterSize(clientIO{c}, 32<<10)
	if err := c.greet(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.LocalName == "" {
		o.LocalName = clientDefaultName
	}
	if o.Timeout <= 0 {
		o.Timeout = clientDefaultTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = clientDefaultChunkSize
	}
	return o
}

func (c *Client) greet(ctx context.Context) error {
	end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	r, err := c.read(ctx)
	if err != nil {
		return err
	}
	if r.Code/100 != 2 {
		return r
	}
	return nil
}

// Hello sends EHLO and records the extensions offered. If the server
// answers EHLO with 500, 502, 504 or 550 it falls back to HELO (no
// extensions). In LMTP mode it sends LHLO, and any reply but 250 is
// returned as a Reply error. Send, StartTLS and Auth say hello themselves
// if needed.
func (c *Client) Hello(ctx context.Context) error {
	end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	return c.hello(ctx)
}

func (c *Client) ensureHello(ctx context.Context) error {
	if c.didHello {
		return nil
	}
	return c.hello(ctx)
}

func (c *Client) hello(ctx context.Context) error {
	if err := clientCheckName(c.opt.LocalName); err != nil {
		return err
	}
	c.ext = map[string]string{}
	verb := "EHLO "
	if c.opt.LMTP {
		verb = "LHLO "
	}
	r, err := c.cmd(ctx, verb+c.opt.LocalName)
	if err != nil {
		return err
	}
	if c.opt.LMTP && r.Code != 250 {
		return r // RFC 2033 has no HELO to fall back to
	}
	switch r.Code {
	case 250:
		for _, l := range r.Lines[1:] {
			kw, param, _ := strings.Cut(strings.TrimSpace(l), " ")
			if kw != "" {
				c.ext[strings.ToUpper(kw)] = strings.TrimSpace(param)
			}
		}
		c.didHello = true
		return nil
	case 500, 502, 504, 550:
		r, err = c.cmd(ctx, "HELO "+c.opt.LocalName)
		if err != nil {
			return err
		}
		if r.Code != 250 {
			return r
		}
		c.didHello = true
		return nil
	}
	return r
}

// Extension reports whether the server offered the EHLO keyword name (any
// case) and its parameters ("" if none).
func (c *Client) Extension(name string) (param string, ok bool) {
	param, ok = c.ext[strings.ToUpper(name)]
	return param, ok
}

// MaxSize returns the server's SIZE limit in bytes; 0 if it declared none.
func (c *Client) MaxSize() int64 {
	n, err := strconv.ParseInt(c.ext["SIZE"], 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// TLSConnectionState returns the TLS state after StartTLS; ok is false on a
// plain connection.
func (c *Client) TLSConnectionState() (state tls.ConnectionState, ok bool) {
	tc, ok := c.conn.(*tls.Conn)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return tc.ConnectionState(), true
}

// StartTLS upgrades the connection (the server must offer STARTTLS) and
// says EHLO again. A nil cfg, or one without ServerName and without
// InsecureSkipVerify, verifies the host name given to Dial.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if err := c.ensureHello(ctx); err != nil {
		return err
	}
	if _, ok := c.ext["STARTTLS"]; !ok {
		return fmt.Errorf("%w: STARTTLS", ErrNotOffered)
	}
	r, err := c.cmd(ctx, "STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return r
	}
	// Anything the server sent after 220 was sent in clear text and must not
	// be read as if it came through TLS (CVE-2011-0411 style injection).
	if c.br.Buffered() > 0 {
		return c.fail(ctx, fmt.Errorf("%w: data after the STARTTLS reply", ErrMalformedReply))
	}
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		cfg.ServerName = c.host
	}
	tc := tls.Client(c.conn, cfg)
	if err := c.arm(); err != nil {
		return c.fail(ctx, err)
	}
	err = tc.HandshakeContext(ctx)
	c.opt.TLSHandshakes.count(tc, err)
	if err != nil {
		return c.fail(ctx, fmt.Errorf("smtp: TLS handshake: %w", err))
	}
	c.conn = tc // br and bw read and write through c.conn
	c.didHello = false
	return c.hello(ctx)
}

// Auth authenticates with a SASL mechanism (sasl.NewPlainClient,
// sasl.NewLoginClient). The server must offer AUTH; whether the channel is
// safe enough for the mechanism is the caller's decision. A refusal is
// returned as the server's Reply.
func (c *Client) Auth(ctx context.Context, mech sasl.Client) error {
	end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	if err := c.ensureHello(ctx); err != nil {
		return err
	}
	if _, ok := c.ext["AUTH"]; !ok {
		return fmt.Errorf("%w: AUTH", ErrNotOffered)
	}
	name, ir, err := mech.Start()
	if err != nil {
		return fmt.Errorf("smtp: auth %s: %w", name, err)
	}
	line := "AUTH " + name
	if ir != nil {
		if len(ir) == 0 {
			line += " ="
		} else {
			line += " " + base64.StdEncoding.EncodeToString(ir)
		}
	}
	r, err := c.cmdMasked(ctx, line, "AUTH "+name+" ***")
	for {
		if err != nil {
			return err
		}
		switch r.Code {
		case 235:
			return nil
		case 334:
		default:
			return r
		}
		challenge, derr := base64.StdEncoding.DecodeString(strings.TrimSpace(r.Lines[0]))
		var resp []byte
		if derr == nil {
			resp, derr = mech.Next(challenge)
		}
		if derr != nil {
			// Cancel the exchange (RFC 4954 §4); the server answers 501.
			if _, err := c.cmd(ctx, "*"); err != nil {
				return err
			}
			return fmt.Errorf("smtp: auth %s: %w", name, derr)
		}
		r, err = c.cmdMasked(ctx, base64.StdEncoding.EncodeToString(resp), "***")
	}
}

// Send runs one transaction: MAIL FROM, RCPT TO for each recipient, DATA
// and the message. The body is sent with CRLF line endings (a bare LF or CR
// becomes CRLF) and dot-stuffed. With PIPELINING, MAIL, every RCPT and DATA
// go out in one write and the replies are read in order (RFC 2920).
//
// A BODY=BINARYMIME message goes with BDAT instead of DATA, byte for byte,
// and so does every message when AlwaysBDAT is set and the server offers
// CHUNKING (with CRLF line endings, not dot-stuffed); see sendBDAT. A
// server without CHUNKING and BINARYMIME gets no binary message:
// ErrBinaryMIMEUnsupported.
//
// Per-recipient replies are in Result.Rcpts; if every recipient is refused,
// the transaction is reset and Send returns a nil error (each Rcpts reply
// says why). The error is for the transaction: a refused MAIL or DATA (or
// final reply) is returned as that Reply, anything else is a local or I/O
// error after which the client is closed.
//
// In LMTP mode the outcome after the message is per recipient: Send reads
// one reply for each accepted recipient into Result.DataPerRcpt and
// returns a nil error whatever their codes, unless one of them is a 421
// (returned as the error; the session is over) or the connection fails.
func (c *Client) Send(ctx context.Context, env *envelope.Envelope, body io.Reader) (Result, error) {
	var res Result
	end, err := c.begin(ctx)
	if err != nil {
		return res, err
	}
	defer end()
	if err := c.ensureHello(ctx); err != nil {
		return res, err
	}
	if len(env.Recipients) == 0 {
		return res, fmt.Errorf("%w: no recipients", ErrBadCommand)
	}
	mail, err := c.mailLine(env, body)
	if err != nil {
		return res, err
	}
	rcpts := make([]string, len(env.Recipients))
	for i, r := range env.Recipients {
		if rcpts[i], err = c.rcptLine(r); err != nil {
			return res, err
		}
	}
	res.Rcpts = make([]Reply, len(rcpts))
	_, pipelining := c.ext["PIPELINING"]
	pipelining = pipelining && !c.opt.NoPipelining
	if c.useBDAT(env) {
		return res, c.sendBDAT(ctx, &res, mail, rcpts, c.chunks(body, env.Body == envelope.BodyBinaryMIME), pipelining)
	}
	if pipelining {
		return c.sendPipelined(ctx, &res, mail, rcpts, body)
	}
	if ok, err := c.stepEnvelope(ctx, &res, mail, rcpts); !ok {
		return res, err
	}
	data, err := c.cmd(ctx, "DATA")
	if err != nil {
		return res, err
	}
	if data.Code != 354 {
		res.Data = data
		if err := c.reset(ctx); err != nil {
			return res, err
		}
		return res, data
	}
	return res, c.data(ctx, &res, body)
}

// stepEnvelope sends MAIL and then each RCPT, waiting for every reply. ok
// is false when the transaction is over: err is then the refused MAIL's
// reply, a 421, an I/O error, or nil when every RCPT was refused (the
// transaction is reset; Rcpts say why).
func (c *Client) stepEnvelope(ctx context.Context, res *Result, mail string, rcpts []string) (ok bool, err error) {
	if res.Mail, err = c.cmd(ctx, mail); err != nil {
		return false, err
	}
	if res.Mail.Code/100 != 2 {
		return false, res.Mail
	}
	accepted := false
	for i, l := range rcpts {
		if res.Rcpts[i], err = c.cmd(ctx, l); err != nil {
			return false, err
		}
		if res.Rcpts[i].Code == 421 {
			return false, res.Rcpts[i]
		}
		accepted = accepted || res.Rcpts[i].Code/100 == 2
	}
	if !accepted {
		return false, c.reset(ctx)
	}
	return true, nil
}

// writeEnvelope buffers MAIL and the RCPTs for a pipelined transaction.
func (c *Client) writeEnvelope(ctx context.Context, mail string, rcpts []string) error {
	if err := c.write(ctx, mail); err != nil {
		return err
	}
	for _, l := range rcpts {
		if err := c.write(ctx, l); err != nil {
			return err
		}
	}
	return nil
}

// readEnvelope reads the replies to a pipelined MAIL and its RCPTs into
// res. A 421 is returned as the error.
func (c *Client) readEnvelope(ctx context.Context, res *Result) (mailOK, accepted bool, err error) {
	if res.Mail, err = c.read(ctx); err != nil {
		return false, false, err
	}
	if res.Mail.Code == 421 {
		return false, false, res.Mail
	}
	for i := range res.Rcpts {
		if res.Rcpts[i], err = c.read(ctx); err != nil {
			return false, false, err
		}
		if res.Rcpts[i].Code == 421 {
			return false, false, res.Rcpts[i]
		}
		accepted = accepted || res.Rcpts[i].Code/100 == 2
	}
	return res.Mail.Code/100 == 2, accepted, nil
}

func (c *Client) sendPipelined(ctx context.Context, res *Result, mail string, rcpts []string, body io.Reader) (Result, error) {
	if err := c.writeEnvelope(ctx, mail, rcpts); err != nil {
		return *res, err
	}
	if err := c.write(ctx, "DATA"); err != nil {
		return *res, err
	}
	if err := c.flush(ctx); err != nil {
		return *res, err
	}
	mailOK, accepted, err := c.readEnvelope(ctx, res)
	if err != nil {
		return *res, err
	}
	data, err := c.read(ctx)
	if err != nil {
		return *res, err
	}
	if data.Code == 354 && (!mailOK || !accepted) && c.opt.LMTP {
		// RFC 2033 §4.2 requires 503 here. After "." an LMTP server sends
		// one reply per accepted recipient, none here, so there is no way
		// to know when it is done: the session is given up.
		return *res, c.fail(ctx, fmt.Errorf("%w: LMTP server accepted DATA without recipients", ErrMalformedReply))
	}
	if data.Code == 354 && (!mailOK || !accepted) {
		// RFC 2920 servers answer DATA with 503 or 554 when nothing was
		// accepted; one that said 354 anyway gets an empty message, which it
		// cannot deliver to anyone, so the session stays in step.
		if err := c.write(ctx, "."); err != nil {
			return *res, err
		}
		if err := c.flush(ctx); err != nil {
			return *res, err
		}
		if data, err = c.read(ctx); err != nil {
			return *res, err
		}
	}
	if data.Code == 421 {
		res.Data = data
		return *res, data
	}
	if !mailOK {
		res.Data = data
		return *res, res.Mail
	}
	if !accepted {
		res.Data = data
		return *res, c.reset(ctx)
	}
	if data.Code != 354 {
		res.Data = data
		if err := c.reset(ctx); err != nil {
			return *res, err
		}
		return *res, data
	}
	return *res, c.data(ctx, res, body)
}

// data sends the message after a 354 and reads the final reply.
func (c *Client) data(ctx context.Context, res *Result, body io.Reader) error {
	dw := dotWriter{w: c.bw}
	var err error
	if wt, ok := body.(io.WriterTo); ok {
		_, err = wt.WriteTo(&dw)
	} else {
		_, err = io.CopyBuffer(&dw, body, c.buffer())
	}
	if err == nil {
		err = dw.close()
	}
	if err != nil {
		// The connection is in the middle of DATA: ending it with "." would
		// deliver a truncated message, so it is closed instead.
		return c.fail(ctx, fmt.Errorf("smtp: sending message: %w", err))
	}
	if err := c.flush(ctx); err != nil {
		return err
	}
	return c.endReplies(ctx, res)
}

// buffer is the client's buffer for copying a message, made when first
// needed.
func (c *Client) buffer() []byte {
	if c.copyBuf == nil {
		c.copyBuf = make([]byte, 32<<10)
	}
	return c.copyBuf
}

// endReplies reads what the server says after the whole message: one
// reply, or in LMTP mode one per accepted recipient.
func (c *Client) endReplies(ctx context.Context, res *Result) error {
	if c.opt.LMTP {
		return c.lmtpReplies(ctx, res)
	}
	var err error
	if res.Data, err = c.read(ctx); err != nil {
		return err
	}
	if res.Data.Code/100 != 2 {
		return res.Data
	}
	res.ID = clientQueuedID(res.Data)
	return nil
}

// lmtpReplies reads the replies after the message in LMTP mode: one per
// recipient whose RCPT was accepted, in RCPT order (RFC 2033 §4.2).
func (c *Client) lmtpReplies(ctx context.Context, res *Result) error {
	res.DataPerRcpt = make([]Reply, len(res.Rcpts))
	for i, rr := range res.Rcpts {
		if rr.Code/100 != 2 {
			continue
		}
		r, err := c.read(ctx)
		if err != nil {
			return err
		}
		res.DataPerRcpt[i] = r
		if res.Data.Code == 0 {
			res.Data = r
		}
		if res.ID == "" && r.Code/100 == 2 {
			res.ID = clientQueuedID(r)
		}
		if r.Code == 421 {
			return r // the client is closed behind it
		}
	}
	return nil
}

// reset sends RSET after a failed transaction; only an I/O error counts.
func (c *Client) reset(ctx context.Context) error {
	_, err := c.cmd(ctx, "RSET")
	return err
}

func (c *Client) mailLine(env *envelope.Envelope, body io.Reader) (string, error) {
	var b strings.Builder
	b.WriteString("MAIL FROM:")
	b.WriteString(env.Sender.Path())
	if _, ok := c.ext["SIZE"]; ok {
		size := env.Size
		if l, ok := body.(interface{ Len() int }); ok && size <= 0 {
			size = int64(l.Len())
		}
		if size > 0 {
			b.WriteString(" SIZE=")
			b.WriteString(strconv.FormatInt(size, 10))
		}
	}
	switch env.Body {
	case envelope.Body8BitMIME:
		if _, ok := c.ext["8BITMIME"]; ok {
			b.WriteString(" BODY=8BITMIME")
		}
	case envelope.BodyBinaryMIME:
		_, chunking := c.ext["CHUNKING"]
		_, binary := c.ext["BINARYMIME"]
		if !chunking || !binary {
			return "", unsupportedError{ErrBinaryMIMEUnsupported, R(554, sdk.EnhancedCode{5, 6, 3}, "Remote server does not accept binary content")}
		}
		b.WriteString(" BODY=BINARYMIME")
	}
	if env.SMTPUTF8 {
		if _, ok := c.ext["SMTPUTF8"]; !ok {
			return "", unsupportedError{ErrSMTPUTF8Unsupported, R(553, sdk.EnhancedCode{5, 6, 7}, "Remote server does not support SMTPUTF8")}
		}
		b.WriteString(" SMTPUTF8")
	}
	if env.RequireTLS {
		// Taken only under TLS (RFC 8689 §2, §4.2.1): an EHLO reply in
		// clear text that offers it may come from anyone on the path.
		// Which TLS is good enough is the caller's policy.
		_, offered := c.ext["REQUIRETLS"]
		if _, underTLS := c.TLSConnectionState(); !offered || !underTLS {
			return "", unsupportedError{ErrRequireTLSUnsupported, R(550, sdk.EnhancedCode{5, 7, 30}, "Remote server does not support REQUIRETLS over TLS")}
		}
		b.WriteString(" REQUIRETLS")
	}
	if _, ok := c.ext["DSN"]; ok {
		if env.Ret != envelope.RetUnset {
			if err := clientCheckParam("RET", string(env.Ret)); err != nil {
				return "", err
			}
			b.WriteString(" RET=")
			b.WriteString(string(env.Ret))
		}
		if env.EnvID != "" {
			if err := clientCheckParam("ENVID", env.EnvID); err != nil {
				return "", err
			}
			b.WriteString(" ENVID=")
			b.WriteString(env.EnvID)
		}
	}
	return b.String(), clientCheckLine(b.String())
}

// unsupportedError is a sentinel (ErrSMTPUTF8Unsupported,
// ErrBinaryMIMEUnsupported, ErrRequireTLSUnsupported) that is also a
// permanent Reply.
type unsupportedError struct {
	err   error
	reply Reply
}

func (e unsupportedError) Error() string   { return e.err.Error() }
func (e unsupportedError) Unwrap() []error { return []error{e.err, e.reply} }

func (c *Client) rcptLine(r envelope.Recipient) (string, error) {
	var b strings.Builder
	b.WriteString("RCPT TO:")
	b.WriteString(r.Address.Path())
	if _, ok := c.ext["DSN"]; ok {
		if r.Notify != 0 {
			b.WriteString(" NOTIFY=")
			b.WriteString(r.Notify.String())
		}
		if r.ORCPT != "" {
			if err := clientCheckParam("ORCPT", r.ORCPT); err != nil {
				return "", err
			}
			b.WriteString(" ORCPT=")
			b.WriteString(r.ORCPT)
		}
	}
	return b.String(), clientCheckLine(b.String())
}

// clientQueuedID finds "queued as X" in a reply (Postfix and most others).
func clientQueuedID(r Reply) string {
	for _, l := range r.Lines {
		i := strings.Index(strings.ToLower(l), "queued as ")
		if i < 0 {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimSpace(l[i+len("queued as "):]), " ")
		if id = strings.Trim(id, "<>.,;:()[]"); id != "" {
			return id
		}
	}
	return ""
}

// Reset sends RSET, abandoning any transaction.
func (c *Client) Reset(ctx context.Context) error { return c.simple(ctx, "RSET", 250) }

// Noop sends NOOP (a keep-alive or liveness check).
func (c *Client) Noop(ctx context.Context) error { return c.simple(ctx, "NOOP", 250) }

// Quit sends QUIT and closes the connection. A reply other than 221 is
// returned as an error, but the connection is closed either way.
func (c *Client) Quit(ctx context.Context) error {
	defer c.Close()
	return c.simple(ctx, "QUIT", 221)
}

// Err returns the error that made the client unusable (an I/O or protocol
// error, a 421, Close), or nil while the connection can carry another
// command. A refused command does not make the client unusable.
func (c *Client) Err() error { return c.err }

// Close closes the connection without QUIT.
func (c *Client) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	if c.err == nil {
		c.err = fmt.Errorf("smtp: client closed: %w", net.ErrClosed)
	}
	return c.conn.Close()
}

func (c *Client) simple(ctx context.Context, line string, want int) error {
	end, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer end()
	r, err := c.cmd(ctx, line)
	if err != nil {
		return err
	}
	if r.Code != want {
		return r
	}
	return nil
}

// begin starts one operation: it fails fast on a broken client or a done
// ctx, and arranges that ctx's deadline and cancellation reach every read
// and write until end is called.
func (c *Client) begin(ctx context.Context) (end func(), err error) {
	if c.err != nil {
		return nil, c.err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	c.deadline, _ = ctx.Deadline()
	c.aborted.Store(false)
	c.debug = c.log.Enabled(ctx, slog.LevelDebug)
	conn := c.conn
	stop := context.AfterFunc(ctx, func() {
		c.aborted.Store(true)
		conn.SetDeadline(clientAbortDeadline)
	})
	return func() { stop() }, nil
}

// arm sets the connection deadline for the next read or write: the
// per-command timeout, capped by the operation's ctx deadline.
func (c *Client) arm() error {
	if c.aborted.Load() {
		return context.Canceled
	}
	d := time.Now().Add(c.opt.Timeout)
	if !c.deadline.IsZero() && c.deadline.Before(d) {
		d = c.deadline
	}
	if err := c.conn.SetDeadline(d); err != nil {
		return err
	}
	if c.aborted.Load() { // cancelled between the check and SetDeadline
		c.conn.SetDeadline(clientAbortDeadline)
	}
	return nil
}

// fail makes err the client's sticky error and closes the connection.
func (c *Client) fail(ctx context.Context, err error) error {
	if c.err != nil && c.closed {
		return c.err
	}
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("smtp: %w", ctx.Err())
	case !strings.HasPrefix(err.Error(), "smtp: "):
		err = fmt.Errorf("smtp: %w", err)
	}
	c.err = err
	c.closed = true
	c.conn.Close()
	return err
}

// cmd writes one command, flushes and reads the reply.
func (c *Client) cmd(ctx context.Context, line string) (Reply, error) {
	return c.cmdMasked(ctx, line, line)
}

// cmdMasked is cmd with logged text in place of the line (credentials).
func (c *Client) cmdMasked(ctx context.Context, line, logged string) (Reply, error) {
	if err := clientCheckLine(line); err != nil {
		return Reply{}, err
	}
	if c.debug {
		c.log.DebugContext(ctx, "smtp client", "cmd", logged)
	}
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	if err := c.flush(ctx); err != nil {
		return Reply{}, err
	}
	return c.read(ctx)
}

// write buffers one command line.
func (c *Client) write(ctx context.Context, line string) error {
	if err := clientCheckLine(line); err != nil {
		return err
	}
	if c.debug {
		c.log.DebugContext(ctx, "smtp client", "cmd", line)
	}
	if _, err := c.bw.WriteString(line); err != nil {
		return c.fail(ctx, err)
	}
	if _, err := c.bw.WriteString("\r\n"); err != nil {
		return c.fail(ctx, err)
	}
	return nil
}

func (c *Client) flush(ctx context.Context) error {
	if err := c.bw.Flush(); err != nil {
		return c.fail(ctx, err)
	}
	return nil
}

// read reads one reply. A 421 means the server is closing the session: the
// reply is returned, and the client is closed behind it.
func (c *Client) read(ctx context.Context) (Reply, error) {
	r, err := readReply(c.br)
	if err != nil {
		return Reply{}, c.fail(ctx, err)
	}
	if c.debug {
		c.log.DebugContext(ctx, "smtp client", "reply", r.String())
	}
	if r.Code == 421 {
		c.fail(ctx, fmt.Errorf("smtp: server closed the session: %w", r))
	}
	return r, nil
}

// clientIO is the connection as the buffers see it: every read and write
// refreshes the deadline first.
type clientIO struct{ c *Client }

func (x clientIO) Read(p []byte) (int, error) {
	if err := x.c.arm(); err != nil {
		return 0, err
	}
	return x.c.conn.Read(p)
}

func (x clientIO) Write(p []byte) (int, error) {
	if err := x.c.arm(); err != nil {
		return 0, err
	}
	return x.c.conn.Write(p)
}

// clientCheckLine refuses a command that would split on the wire.
func clientCheckLine(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return fmt.Errorf("%w: CR, LF or NUL in %q", ErrBadCommand, line)
	}
	return nil
}

// clientCheckParam refuses an ESMTP parameter value with a space or control byte.
func clientCheckParam(name, v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: bad %s value %q", ErrBadCommand, name, v)
		}
	}
	return nil
}

func clientCheckName(name string) error {
	if name == "" || strings.ContainsAny(name, " \t\r\n\x00") {
		return fmt.Errorf("%w: bad local name %q", ErrBadCommand, name)
	}
	return nil
}

// readReply reads one reply, possibly multi-line ("250-" continues). Every
// line must carry the same 3-digit code (first digit 2-5). An enhanced
// status code (RFC 3463) whose class matches the reply code is taken from
// the first line into Enhanced, and removed from later lines that repeat
// it. Lines are bounded by clientMaxReplyLine bytes and clientMaxReplyLines lines; a
// bare LF ends a line too, and a stray CR inside a line becomes a space.
func readReply(br *bufio.Reader) (Reply, error) {
	var r Reply
	for n := 0; ; n++ {
		if n == clientMaxReplyLines {
			return Reply{}, fmt.Errorf("%w: more than %d lines", ErrMalformedReply, clientMaxReplyLines)
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			switch {
			case errors.Is(err, bufio.ErrBufferFull):
				return Reply{}, fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, clientMaxReplyLine)
			case errors.Is(err, io.EOF) && (len(line) > 0 || n > 0):
				return Reply{}, io.ErrUnexpectedEOF
			}
			return Reply{}, err
		}
		if len(line) > clientMaxReplyLine {
			return Reply{}, fmt.Errorf("%w: line longer than %d bytes", ErrMalformedReply, clientMaxReplyLine)
		}
		line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
		if len(line) < 3 || line[0] < '2' || line[0] > '5' || !clientIsDigit(line[1]) || !clientIsDigit(line[2]) {
			return Reply{}, fmt.Errorf("%w: bad line %q", ErrMalformedReply, clientExcerpt(line))
		}
		code := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		more := false
		var text string
		if len(line) > 3 {
			switch line[3] {
			case '-':
				more = true
			case ' ':
			default:
				return Reply{}, fmt.Errorf("%w: bad line %q", ErrMalformedReply, clientExcerpt(line))
			}
			text = string(line[4:])
			if strings.IndexByte(text, '\r') >= 0 {
				text = strings.ReplaceAll(text, "\r", " ")
			}
		}
		if n == 0 {
			r.Code = code
			if e, rest, ok := clientSplitEnhanced(code, text); ok {
				r.Enhanced, text = e, rest
			}
		} else {
			if code != r.Code {
				return Reply{}, fmt.Errorf("%w: code %d after %d", ErrMalformedReply, code, r.Code)
			}
			if e, rest, ok := clientSplitEnhanced(code, text); ok && e == r.Enhanced {
				text = rest
			}
		}
		r.Lines = append(r.Lines, text)
		if !more {
			return r, nil
		}
	}
}

// clientSplitEnhanced takes an enhanced status code of the reply's class off the
// front of text.
func clientSplitEnhanced(code int, text string) (sdk.EnhancedCode, string, bool) {
	if len(text) < 5 || text[0] < '2' || text[0] > '5' || text[1] != '.' {
		return sdk.EnhancedCode{}, text, false
	}
	tok, rest, _ := strings.Cut(text, " ")
	e, err := sdk.ParseEnhancedCode(tok)
	if err != nil || int(e[0]) != code/100 {
		return sdk.EnhancedCode{}, text, false
	}
	return e, rest, true
}

func clientIsDigit(b byte) bool { return b >= '0' && b <= '9' }

func clientExcerpt(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// dotWriter writes message content for DATA: line endings become CRLF (a
// bare LF or a bare CR counts as a line end) and a line starting with "."
// gets another one (RFC 5321 §4.5.2). close ends the last line if needed and
// writes the terminating ".".
type dotWriter struct {
	w     *bufio.Writer
	state dotWriterState
}

type dotWriterState uint8

const (
	dwLineStart dotWriterState = iota // at the start of a line (also: nothing written yet)
	dwInLine                          // inside a line
	dwAfterCR                         // a CR was the last byte of the previous Write
)

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	w := d.w
	for len(p) > 0 {
		switch d.state {
		case dwAfterCR:
			w.WriteString("\r\n")
			d.state = dwLineStart
			if p[0] == '\n' {
				p = p[1:]
			}
			continue
		case dwLineStart:
			if p[0] == '.' {
				w.WriteByte('.')
			}
			d.state = dwInLine
		}
		i := dotLineEnd(p)
		if i < 0 {
			w.Write(p)
			break
		}
		w.Write(p[:i])
		if p[i] == '\r' && i+1 == len(p) {
			d.state = dwAfterCR
			break
		}
		w.WriteString("\r\n")
		d.state = dwLineStart
		if p[i] == '\r' && p[i+1] == '\n' {
			i++
		}
		p = p[i+1:]
	}
	// bufio.Writer errors are sticky; one check covers every write above.
	if _, err := w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// dotLineEnd returns the index of the first CR or LF in p, or -1.
func dotLineEnd(p []byte) int {
	i := bytes.IndexByte(p, '\n')
	q := p
	if i >= 0 {
		q = p[:i]
	}
	if j := bytes.IndexByte(q, '\r'); j >= 0 {
		return j
	}
	return i
}

func (d *dotWriter) close() error {
	if d.state != dwLineStart {
		d.w.WriteString("\r\n")
	}
	d.state = dwLineStart
	_, err := d.w.WriteString(".\r\n")
	return err
}
