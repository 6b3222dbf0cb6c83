package smtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/sdk"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// cmdData answers DATA: 354, the content through the strict DataReader
// into a draft, then the data hook and the commit. drop (a command hook's
// Drop) reads the content and throws it away.
func (s *session) cmdData(ctx context.Context, arg string, drop bool) {
	tx := s.tx
	switch {
	case arg != "":
		s.reply(R(501, enh554, "Syntax: DATA"))
		return
	case tx == nil:
		s.reply(R(503, enh551, "Need MAIL command"))
		return
	case tx.bdat:
		s.reply(R(503, enh551, "DATA not allowed during a BDAT transfer"))
		return
	case tx.env.Body == envelope.BodyBinaryMIME:
		s.reply(R(503, enh551, "BODY=BINARYMIME requires BDAT"))
		return
	case len(tx.env.Recipients) == 0 && tx.dropped == 0:
		s.reply(R(503, enh551, "No valid recipients"))
		return
	}
	// Recipients all dropped by hooks: take the message, spool nothing.
	blackhole := tx.blackhole || drop || len(tx.env.Recipients) == 0
	var draft Draft
	if !blackhole {
		var err error
		if draft, err = s.srv.opt.Spool.Create(ctx); err != nil {
			s.log.Error("smtp: spool create failed", "err", err)
			s.reply(R(451, enh430, "Local error in processing"))
			return
		}
		tx.draft = draft
	}
	s.reply(Reply{Code: 354, Lines: []string{"End data with <CR><LF>.<CR><LF>"}})
	if err := s.flush(); err != nil {
		s.resetTx()
		s.connFailed(err)
		return
	}

	s.beginData()
	dr := NewDataReader(s.br, DataReaderOptions{
		MaxSize:            s.lim.maxMessage,
		MaxHeaderSize:      s.lim.maxHeader,
		FixBareLineEndings: s.lim.fixBare,
	})
	dw := &draftWriter{w: draft}
	err := s.copy(dw, dr)
	s.endData()
	if err != nil {
		s.resetTx()
		switch {
		case errors.Is(err, ErrTooBig):
			s.refuse(R(552, enh534, "Message too big"))
		case errors.Is(err, ErrHeaderTooBig):
			s.refuse(R(552, enh534, "Message header too large"))
		case errors.Is(err, ErrBareLineEnding):
			s.refuse(R(550, enh552, "Bare CR or LF not allowed, use CRLF line endings"))
		default:
			s.connFailed(err)
		}
		return
	}
	if dw.hops.Hops() > s.lim.maxHops {
		s.tooManyHops(dw.hops.Hops())
		return
	}
	if dw.err != nil {
		s.log.Error("smtp: spool write failed", "id", draft.ID(), "err", dw.err)
		s.resetTx()
		s.refuse(R(451, enh430, "Local error in processing"))
		return
	}
	s.finish(ctx, dw.n, blackhole)
}

// copy copies src to dst through a pooled buffer.
func (s *session) copy(dst io.Writer, src io.Reader) error {
	bp := s.srv.buffers.Get().(*[]byte)
	defer s.srv.buffers.Put(bp)
	_, err := io.CopyBuffer(dst, src, *bp)
	return err
}

// draftWriter writes content to a draft (nil: discard), remembering the
// first write error instead of returning it, so that the session keeps
// reading the client's data to its end and stays in sync. It counts the
// Received fields of the content on the way.
type draftWriter struct {
	w    io.Writer
	n    int64
	err  error
	hops message.HopCounter
}

func (d *draftWriter) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	d.hops.Write(p)
	if d.w != nil && d.err == nil {
		if _, err := d.w.Write(p); err != nil {
			d.err = err
		}
	}
	return len(p), nil
}

// finish ends a transaction whose content is in s.tx.draft: data hook,
// header fields, commit, reply. The transaction is over afterwards.
func (s *session) finish(ctx context.Context, size int64, blackhole bool) {
	tx := s.tx
	defer s.resetTx()
	tx.env.Received = time.Now()
	s.fillClient(&tx.env)
	if blackhole || tx.draft == nil {
		s.log.Info("smtp: message discarded", "size", size)
		s.reply(R(250, enh200, "Ok: queued as "+s.blackholeID()))
		return
	}
	req := hook.Request{Stage: sdk.StageData, Envelope: &tx.env}
	auth, ok := s.checkAuth(ctx, tx, &size)
	if !ok {
		return
	}
	draft := tx.draft
	id := draft.ID()
	if auth != nil {
		req.Auth = &auth.Results
	}
	view := message.NewView(size, draft.Open) // the header is read once, for all below
	if s.srv.hooks != nil {
		// What the data hook sees; decided again below on what it leaves.
		tx.env.TLSOptional = s.tlsOptional(&tx.env, view, nil)
		req.Message = view
	}
	res := s.dispatch(ctx, req)
	switch res.Decision.Verdict {
	case sdk.Reject, sdk.Defer:
		s.srv.rejected.Add(1)
		s.replyDecision(sdk.StageData, res.Decision)
		return
	case sdk.Drop:
		s.log.Info("smtp: message dropped by hook", "id", id, "size", size)
		s.reply(R(250, enh200, "Ok: queued as "+id))
		return
	}

	// The effects, in this order: Body, RemoveHeaders (both rewrite the
	// content into a new draft), AddHeaders (after our Received field),
	// Sender, Recipients. The Received field names the recipients the
	// client gave, not a list's members.
	eff := &res.Effects
	if eff.Body != nil || len(eff.RemoveHeaders) > 0 {
		nd, n, ok := s.rewrite(ctx, draft, eff)
		if !ok {
			return
		}
		tx.draft, draft, id, size = nd, nd, nd.ID(), n
		view = message.NewView(size, draft.Open)
	}
	// TLS-Required as the message is spooled: the hook may have removed
	// the field, replaced the body, or added the field.
	tx.env.TLSOptional = s.tlsOptional(&tx.env, view, eff.AddHeaders)
	header := s.received(&tx.env, id)
	if auth != nil {
		header = append(auth.Header, header...) // on top (RFC 8601 §5)
	}
	header = message.AppendFields(header, eff.AddHeaders)
	if eff.Sender != nil {
		tx.env.Sender = *eff.Sender
	}
	if eff.Recipients != nil {
		tx.env.Recipients = replaceRecipients(tx.env.Recipients, eff.Recipients)
	}
	if err := draft.Commit(ctx, &tx.env, header); err != nil {
		s.log.Error("smtp: spool commit failed", "id", id, "err", err)
		s.refuse(R(451, enh430, "Local error in processing"))
		return
	}
	tx.draft = nil // committed: nothing to abort
	s.srv.accepted.Add(1)
	s.tookMessage()
	if s.log.Enabled(ctx, slog.LevelInfo) { // spares making the arguments at level warn
		s.log.Info("smtp: message queued", "id", id, "from", tx.env.Sender.String(),
			"rcpts", len(tx.env.Recipients), "size", size)
	}
	s.reply(R(250, enh200, "Ok: queued as "+id))
}

// rewrite applies the data hook's Body and RemoveHeaders to the content
// of draft, into a new draft; false means it failed and has replied.
func (s *session) rewrite(ctx context.Context, draft Draft, eff *hook.Effects) (Draft, int64, bool) {
	nd, n, err := s.rewriteContent(ctx, draft, eff)
	switch {
	case errors.Is(err, errRewriteTooBig):
		s.log.Info("smtp: message too big after the data hook's changes", "id", draft.ID(), "max", s.lim.maxMessage)
		s.refuse(R(552, enh534, "Message too big"))
		return nil, 0, false
	case err != nil:
		s.log.Error("smtp: applying the data hook's changes", "id", draft.ID(), "err", err)
		s.refuse(R(451, enh430, "Local error in processing"))
		return nil, 0, false
	}
	s.log.Debug("smtp: message rewritten by the data hook", "id", draft.ID(), "new_id", nd.ID(), "size", n)
	return nd, n, true
}

// tlsOptional is Envelope.TLSOptional for env's message, whose content is
// view and whose added header fields are added: true when its header
// section has "TLS-Required: No" (RFC 8689 §5, any case), the sender
// asking that recipient TLS policy (MTA-STS, DANE) not stop its delivery,
// and REQUIRETLS was not given (it overrides the field, §4.1). It is
// decided before the data hook (the hook sees it) and again on what is
// finally spooled, so that the flag and the field never disagree. A
// header that cannot be read (a spool that keeps no content) asks
// nothing.
func (s *session) tlsOptional(env *envelope.Envelope, view *message.View, added []sdk.HeaderField) bool {
	if env.RequireTLS {
		return false
	}
	fields, err := view.SharedHeader() // only read: no copy
	if err != nil {
		s.log.Debug("smtp: header not read for TLS-Required", "err", err)
	}
	return message.TLSRequiredNo(fields) || message.TLSRequiredNo(added)
}

// blackholeID is the queue ID reported for a discarded message, so that a
// drop looks like any acceptance.
func (s *session) blackholeID() string {
	s.tookMessage()
	return fmt.Sprintf("%s.%d", s.id, s.messages)
}

// received is the Received trace field of RFC 5321 §4.4, with the WITH
// protocol types of RFC 3848 and RFC 6531.
func (s *session) received(env *envelope.Envelope, id string) []byte {
	var b bytes.Buffer
	b.Grow(256)
	b.WriteString("Received: from ")
	b.WriteString(s.receivedFrom())
	b.WriteString("\r\n\tby ")
	b.WriteString(s.srv.opt.Hostname)
	b.WriteString(" (gateway) with ")
	b.WriteString(s.protocol(env))
	b.WriteString(" id ")
	b.WriteString(id)
	if len(env.Recipients) == 1 {
		b.WriteString("\r\n\tfor ")
		b.WriteString(headerSafe(env.Recipients[0].Address.Path()))
		b.WriteString("; ")
	} else {
		b.WriteString(";\r\n\t")
	}
	b.WriteString(env.Received.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.Bytes()
}

// receivedFrom is the FROM clause of the Received field: the EHLO name
// and the client's address literal, "client.test ([192.0.2.1])". An EHLO
// name that is not a domain or an address literal (RFC 5321 §4.4's
// Extended-Domain) goes into a comment after the address literal, as Exim
// writes it, "[192.0.2.1] (helo=name)", with every character that could
// end the comment or pass for more trace turned into '?': a client must
// not write "evil.test) by trusted.example.test (gateway) with ESMTPSA id
// fake;" into our trace.
func (s *session) receivedFrom() string {
	lit := "unknown"
	switch {
	case !s.ip.IsValid():
	case s.ip.Is4():
		lit = "[" + s.ip.String() + "]"
	default:
		lit = "[IPv6:" + s.ip.String() + "]"
	}
	if envelope.ValidHost(s.helo) {
		return s.helo + " (" + lit + ")"
	}
	return lit + " (helo=" + commentSafe(s.helo, maxHELOInTrace) + ")"
}

// maxHELOInTrace is the most of an EHLO name the trace keeps: a domain's
// 255 octets, as Postfix cuts it.
const maxHELOInTrace = 255

// commentSafe is s cut to max bytes with every byte that is not printable
// ASCII, or is one of Postfix's neutered characters (space, <, >, (, ),
// \, ", ; and @), turned into '?'.
func commentSafe(s string, max int) string {
	b := []byte(s[:min(len(s), max)])
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`<>()\";@`, c) >= 0 {
			b[i] = '?'
		}
	}
	return string(b)
}

// protocol is the WITH clause: SMTP, ESMTP with S (TLS) and A (AUTH)
// suffixes, UTF8SMTP likewise for SMTPUTF8 transactions.
func (s *session) protocol(env *envelope.Envelope) string {
	if !s.esmtp {
		return "SMTP"
	}
	p := "ESMTP"
	if env.SMTPUTF8 {
		p = "UTF8SMTP"
	}
	if s.tls {
		p += "S"
	}
	if s.authUser != "" {
		p += "A"
	}
	return p
}

// headerSafe replaces control characters, so client-supplied text cannot
// break a header field.
func headerSafe(v string) string {
	if strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return v
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, v)
}

// drain reads and discards n bytes of a chunk that is refused; false
// means the connection failed (the session ends).
func (s *session) drain(n int64) bool { return s.readExactly(io.Discard, n) }

// readExactly copies the n bytes of a chunk to dst under the data
// timeouts; false means the connection failed (the session ends).
func (s *session) readExactly(dst io.Writer, n int64) bool {
	if n == 0 {
		return true
	}
	s.beginData()
	if int64(s.br.Buffered()) < n {
		s.flush()
	}
	got, err := s.copyN(dst, n)
	s.endData()
	if err == nil && got < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		s.resetTx()
		s.connFailed(err)
		return false
	}
	return true
}

// cmdBDAT answers BDAT (RFC 3030). Each chunk is read exactly, with no dot
// processing; bare CR and LF are checked across the whole message (unless
// BODY=BINARYMIME) and get the listener's policy at LAST.
func (s *session) cmdBDAT(ctx context.Context, arg string, drop bool) {
	n, last, err := ParseBDAT(arg)
	if err != nil {
		s.reply(R(501, enh554, "Syntax: BDAT size [LAST]"))
		return
	}
	tx := s.tx
	switch {
	case tx == nil:
		if s.drain(n) {
			s.reply(R(503, enh551, "Need MAIL command"))
		}
		return
	case len(tx.env.Recipients) == 0 && tx.dropped == 0:
		if s.drain(n) {
			s.reply(R(503, enh551, "No valid recipients"))
		}
		return
	}
	if drop || len(tx.env.Recipients) == 0 {
		tx.blackhole = true
	}
	if !s.startBDAT(ctx, tx, n) || !s.readChunk(tx, n) {
		return
	}
	if !last {
		s.reply(R(250, enh200, itoa(n)+" octets received"))
		return
	}
	s.lastChunk(ctx, tx)
}

// startBDAT readies tx for a chunk of n bytes: at the first chunk the
// draft and the writers the chunks go through (none for a blackholed
// transaction); every chunk, the size limit. false when it has answered
// (the chunk drained) and the command is over.
func (s *session) startBDAT(ctx context.Context, tx *txn, n int64) bool {
	if tx.blackhole && tx.draft != nil {
		tx.draft.Abort()
		tx.draft = nil
	}
	if !tx.bdat {
		tx.bdat = true
		if !tx.blackhole {
			draft, err := s.srv.opt.Spool.Create(ctx)
			if err != nil {
				s.log.Error("smtp: spool create failed", "err", err)
				if s.drain(n) {
					s.resetTx()
					s.reply(R(451, enh430, "Local error in processing"))
				}
				return false
			}
			tx.draft = draft
		}
		tx.dw = &draftWriter{w: tx.draft}
		tx.chunk = &chunkWriter{
			dst:       tx.dw,
			binary:    tx.env.Body == envelope.BodyBinaryMIME,
			fix:       s.lim.fixBare,
			maxHeader: s.lim.maxHeader,
		}
	}
	if tx.blackhole {
		tx.dw.w = nil
	}
	if s.lim.maxMessage > 0 && tx.size+n > s.lim.maxMessage {
		if s.drain(n) {
			s.resetTx()
			s.refuse(R(552, enh534, "Message too big"))
		}
		return false
	}
	return true
}

// readChunk copies a chunk of n bytes into tx; false when the connection
// failed or the header grew too large (answered).
func (s *session) readChunk(tx *txn, n int64) bool {
	if !s.readExactly(tx.chunk, n) {
		return false
	}
	tx.size += n
	if tx.chunk.headerTooBig {
		s.resetTx()
		s.refuse(R(552, enh534, "Message header too large"))
		return false
	}
	return true
}

// lastChunk ends a BDAT transaction at its LAST chunk: the checks that
// need the whole message, then finish.
func (s *session) lastChunk(ctx context.Context, tx *txn) {
	tx.chunk.finish()
	if tx.chunk.bare && !tx.chunk.fix {
		s.resetTx()
		s.refuse(R(550, enh552, "Bare CR or LF not allowed, use CRLF line endings"))
		return
	}
	if tx.dw.hops.Hops() > s.lim.maxHops {
		s.tooManyHops(tx.dw.hops.Hops())
		return
	}
	if tx.dw.err != nil {
		s.log.Error("smtp: spool write failed", "id", tx.draft.ID(), "err", tx.dw.err)
		s.resetTx()
		s.refuse(R(451, enh430, "Local error in processing"))
		return
	}
	s.finish(ctx, tx.dw.n, tx.blackhole) // the content as stored (bare line endings fixed)
}

// copyN copies exactly n bytes of the input to dst (fewer at EOF).
func (s *session) copyN(dst io.Writer, n int64) (int64, error) {
	bp := s.srv.buffers.Get().(*[]byte)
	defer s.srv.buffers.Put(bp)
	return io.CopyBuffer(dst, io.LimitReader(s.br, n), *bp)
}

// chunkWriter passes BDAT content on to dst, watching for bare CR and LF
// across chunk boundaries (and converting them when fix is set) and
// measuring the header section.
type chunkWriter struct {
	dst    *draftWriter
	binary bool // BODY=BINARYMIME: content is passed on as is
	fix    bool
	prevCR bool
	bare   bool

	maxHeader    int64
	header       int64
	lineLen      int // bytes other than CR in the current header line
	headerDone   bool
	headerTooBig bool
}

var lf = []byte("\n")

func (c *chunkWriter) Write(p []byte) (int, error) {
	if !c.headerDone {
		c.scanHeader(p)
	}
	if c.binary {
		c.dst.Write(p)
		return len(p), nil
	}
	start := 0
	for i, b := range p {
		if c.prevCR && b != '\n' { // the CR before b was bare
			c.bare = true
			if c.fix {
				c.dst.Write(p[start:i])
				c.dst.Write(lf)
				start = i
			}
		}
		if b == '\n' && !c.prevCR {
			c.bare = true
			if c.fix {
				c.dst.Write(p[start:i])
				c.dst.Write(crlf)
				start = i + 1
			}
		}
		c.prevCR = b == '\r'
	}
	c.dst.Write(p[start:])
	return len(p), nil
}

// finish handles a CR at the very end of the message.
func (c *chunkWriter) finish() {
	if c.prevCR && !c.binary {
		c.bare = true
		if c.fix {
			c.dst.Write(lf)
		}
		c.prevCR = false
	}
}

func (c *chunkWriter) scanHeader(p []byte) {
	for _, b := range p {
		switch b {
		case '\n':
			if c.lineLen == 0 {
				c.headerDone = true
				return
			}
			c.lineLen = 0
		case '\r':
		default:
			c.lineLen++
		}
		c.header++
		if c.maxHeader > 0 && c.header > c.maxHeader {
			c.headerTooBig, c.headerDone = true, true
			return
		}
	}
}

// tooManyHops refuses a message that arrived with more Received fields
// than max_hops: it is going round in a mail loop. Nothing is spooled.
func (s *session) tooManyHops(n int) {
	s.log.Info("smtp: mail loop", "received", n, "max_hops", s.lim.maxHops,
		"from", s.tx.env.Sender.String())
	s.resetTx()
	s.refuse(R(554, enh546, "Too many hops (mail loop detected)"))
}

// refuse answers a message that is not queued after all (its content came
// but it was refused or could not be stored), and counts it for the
// metrics: every such reply goes through here.
func (s *session) refuse(r Reply) {
	s.srv.rejected.Add(1)
	s.reply(r)
}
