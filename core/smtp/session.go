package smtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// Enhanced status codes (RFC 3463) of the server's own replies.
var (
	enh200 = sdk.EnhancedCode{2, 0, 0}
	enh210 = sdk.EnhancedCode{2, 1, 0}
	enh215 = sdk.EnhancedCode{2, 1, 5}
	enh250 = sdk.EnhancedCode{2, 5, 0}
	enh270 = sdk.EnhancedCode{2, 7, 0}
	enh418 = sdk.EnhancedCode{4, 1, 8}
	enh430 = sdk.EnhancedCode{4, 3, 0}
	enh431 = sdk.EnhancedCode{4, 3, 1}
	enh432 = sdk.EnhancedCode{4, 3, 2}
	enh442 = sdk.EnhancedCode{4, 4, 2}
	enh453 = sdk.EnhancedCode{4, 5, 3}
	enh454 = sdk.EnhancedCode{4, 5, 4}
	enh470 = sdk.EnhancedCode{4, 7, 0}
	enh471 = sdk.EnhancedCode{4, 7, 1}
	enh475 = sdk.EnhancedCode{4, 7, 5}
	enh500 = sdk.EnhancedCode{5, 0, 0}
	enh518 = sdk.EnhancedCode{5, 1, 8}
	enh534 = sdk.EnhancedCode{5, 3, 4}
	enh546 = sdk.EnhancedCode{5, 4, 6}
	enh551 = sdk.EnhancedCode{5, 5, 1}
	enh552 = sdk.EnhancedCode{5, 5, 2}
	enh554 = sdk.EnhancedCode{5, 5, 4}
	enh556 = sdk.EnhancedCode{5, 5, 6}
	enh567 = sdk.EnhancedCode{5, 6, 7}
	enh570 = sdk.EnhancedCode{5, 7, 0}
	enh571 = sdk.EnhancedCode{5, 7, 1}
	enh578 = sdk.EnhancedCode{5, 7, 8}
)

// enh5710 is RFC 5248's X.7.10 Encryption Needed.
var enh5710 = sdk.EnhancedCode{5, 7, 10}

// Reading a command line.
var (
	errLineTooLong = errors.New("smtp: line too long")
	errBareLF      = errors.New("smtp: bare LF in command")
	errShutdown    = errors.New("smtp: server shutting down")
)

const (
	readBufferSize = 8 << 10
	// refreshEvery is how many bytes of message content may arrive between
	// two refreshes of the read deadline.
	refreshEvery = 8 << 10
	closeTimeout = 10 * time.Second // flushing the last reply before closing
	forcedWrite  = time.Second      // write deadline once a shutdown is forced
)

// aLongTimeAgo is a read deadline that wakes a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// session is one SMTP connection. Only its own goroutine touches it, except
// for mu-guarded conn and idle, which Shutdown reads.
type session struct {
	srv  *Server
	lim  *limits
	id   string
	ip   netip.Addr
	port int
	log  *slog.Logger

	mu     sync.Mutex
	conn   net.Conn // replaced by STARTTLS
	idle   bool     // blocked waiting for a command, or in a TLS handshake
	idleTx bool     // … inside a mail transaction, which Shutdown lets finish

	rd              connReader
	*sessionBuffers // br and bw, the server's again once the session ends

	helo     string // "" until EHLO/HELO
	esmtp    bool
	tls      bool
	authUser string
	tx       *txn
	notes    map[string]string // written by handlers outside a transaction; never changed once handed out
	hs       *hook.Session     // the last view of the session handed to hooks; never changed once handed out

	verb     string // the command being answered, for logs
	errors   int    // 4xx and 5xx replies sent
	junk     int    // junk commands since the session began or last took a message
	quit     bool   // close after the current command
	messages int    // messages accepted
}

// txn is one mail transaction, MAIL FROM to the end of DATA or BDAT LAST.
type txn struct {
	env       envelope.Envelope
	accepted  int               // RCPT commands answered 250 (dropped ones too)
	dropped   int               // recipients a hook dropped
	blackhole bool              // accept everything, spool nothing (mail hook Drop)
	skip      []string          // handlers not to call for the rest of the transaction
	notes     map[string]string // written by handlers during the transaction; never changed once handed out
	mailboxes map[string]bool   // the Mailbox() of each recipient, made when a second one comes

	// BDAT state.
	bdat  bool
	draft Draft // nil while no chunk arrived, or blackholed
	dw    *draftWriter
	chunk *chunkWriter
	size  int64
}

func newSession(srv *Server, conn net.Conn, id string, ip netip.Addr, port int) *session {
	s := &session{
		srv:  srv,
		lim:  &srv.limits,
		id:   id,
		ip:   ip,
		port: port,
		conn: conn,
	}
	s.log = newSessionLogger(srv.log, id, ip)
	s.rd.s = s
	s.sessionBuffers = srv.takeBuffers()
	s.br.Reset(&s.rd)
	s.bw.Reset(conn)
	return s
}

// sessionBuffers are a session's read and write buffers. A server keeps
// those of ended sessions for the next ones: with a connection per
// message, as most MX traffic comes, making and clearing their 12 KiB
// for each session was about a fifth of the bytes `gateway serve`
// allocated a message (its heap profile under smtp-source: about 40 KB
// a message without them).
type sessionBuffers struct {
	br *bufio.Reader
	bw *bufio.Writer
}

// takeBuffers returns the buffers of an ended session, emptied, or new
// ones.
func (srv *Server) takeBuffers() *sessionBuffers {
	size := max(readBufferSize, srv.limits.maxLine)
	if b, ok := srv.sessionBufs.Get().(*sessionBuffers); ok && b.br.Size() >= size {
		return b
	}
	return &sessionBuffers{br: bufio.NewReaderSize(nil, size), bw: bufio.NewWriterSize(nil, 4<<10)}
}

// releaseBuffers gives s's buffers back to the server, emptied (what a
// client sent and the session did not read, and any reply it could not
// send, are dropped), once nothing of s reads or writes them again.
func (s *session) releaseBuffers() {
	b := s.sessionBuffers
	s.sessionBuffers = nil
	b.br.Reset(nil)
	b.bw.Reset(nil)
	s.srv.sessionBufs.Put(b)
}

// serve runs the session until the client quits, an error or a shutdown
// ends it. ctx is the server's root context.
func (s *session) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	defer s.srv.wg.Done()
	defer s.srv.remove(s)
	defer cancel()
	defer func() {
		s.closeConn()
		s.releaseBuffers()
		if s.log.Enabled(ctx, slog.LevelInfo) { // spares making the arguments at level warn
			s.log.Info("smtp: session ended", "duration", time.Since(start).Round(time.Millisecond),
				"messages", s.messages, "errors", s.errors)
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("smtp: session panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	defer s.resetTx()

	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("smtp: session started", "port", s.port) // the server's logger names the listener
	}
	if s.srv.implicitTLS && !s.handshake(ctx) {
		return // before the connect hook: no hook has seen this connection
	}
	if s.greet(ctx) {
		for s.next(ctx) {
		}
	}
	s.resetTx() // an unfinished transaction ends before the disconnect stage
	s.dispatch(ctx, hook.Request{Stage: sdk.StageDisconnect})
}

// greet runs the connect hook and sends the greeting; false means close.
func (s *session) greet(ctx context.Context) bool {
	res := s.dispatch(ctx, hook.Request{Stage: sdk.StageConnect})
	switch res.Decision.Verdict {
	case sdk.Reject, sdk.Defer, sdk.Drop:
		// A rejected connection is closed straight away (no 554-then-503
		// state): simpler, and what STYLE.md §3.2 allows.
		s.replyDecision(sdk.StageConnect, res.Decision)
		return false
	}
	s.reply(Reply{Code: 220, Lines: []string{s.srv.opt.Hostname + " ESMTP ready"}})
	return true
}

// next reads and answers one command; false means close.
func (s *session) next(ctx context.Context) bool {
	s.verb = ""
	line, err := s.readCommand()
	switch {
	case err == nil:
	case errors.Is(err, errLineTooLong):
		s.reply(R(500, enh552, "Line too long"))
		return s.ok()
	case errors.Is(err, errBareLF):
		s.reply(R(500, enh552, "Bare LF not allowed"))
		return s.ok()
	default:
		s.connFailed(err)
		return false
	}
	cmd, err := ParseCommand(line)
	if err != nil {
		s.reply(R(500, enh552, "Syntax error"))
		return s.ok()
	}
	s.verb = cmd.Verb
	if junkCommand(cmd.Verb) {
		if s.junk++; s.junk > junkCommandLimit {
			s.log.Info("smtp: too many commands without mail", "limit", junkCommandLimit)
			s.reply(R(421, enh470, s.srv.opt.Hostname+" Too many commands, closing connection"))
			return false
		}
	}
	s.handle(ctx, cmd)
	return s.ok()
}

// junkCommandLimit is how many junk commands a session may send before
// the server closes it, counted from its start or its last message: like
// Postfix's smtpd_junk_command_limit, so that a client cannot hold a
// connection slot forever with NOOP, RSET or VRFY.
const junkCommandLimit = 100

// junkCommand reports whether verb moves no mail: NOOP, RSET, VRFY, EXPN,
// HELP, ETRN (Postfix's junk commands, and their kin) and HELO or EHLO,
// which a client needs once or twice a session. Unknown verbs are errors,
// and max_errors counts those.
func junkCommand(verb string) bool {
	switch verb {
	case "NOOP", "RSET", "VRFY", "EXPN", "HELP", "ETRN", "HELO", "EHLO":
		return true
	}
	return false
}

// tookMessage counts a message the session answered 250 to the end of;
// a client that sends mail starts its junk count again.
func (s *session) tookMessage() {
	s.messages++
	s.junk = 0
}

// ok reports whether the session goes on after a command, sending the
// too-many-errors reply when the limit is reached.
func (s *session) ok() bool {
	if s.quit {
		return false
	}
	if s.lim.maxErrors > 0 && s.errors >= s.lim.maxErrors {
		s.reply(R(421, enh470, s.srv.opt.Hostname+" Too many errors"))
		return false
	}
	return true
}

// connFailed ends the session after a read or write error, with a 421
// when the error was a timeout.
func (s *session) connFailed(err error) {
	s.quit = true
	switch {
	case errors.Is(err, errShutdown) || (isTimeout(err) && s.srv.shutting.Load()):
		s.reply(R(421, enh432, s.srv.opt.Hostname+" Service shutting down"))
	case isTimeout(err):
		s.reply(R(421, enh442, s.srv.opt.Hostname+" Timeout, closing connection"))
	case errors.Is(err, errUntrustedProxyHeader):
		s.log.Info("smtp: connection closed", "err", err)
	default:
		s.log.Debug("smtp: connection ended", "err", err)
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// reply buffers r; it goes out at the next flush.
func (s *session) reply(r Reply) {
	r.writeTo(s.bw)
	if r.Code >= 400 {
		s.errors++
		s.srv.countRefusal(s.verb, r)
		s.log.Info("smtp: error reply", "cmd", s.verb, "reply", r.String())
	}
}

// replyDecision answers with a hook decision's reply (stage defaults
// filled in) and closes the session when the decision asks for it.
func (s *session) replyDecision(stage sdk.Stage, d sdk.Decision) {
	hr := hook.DefaultReply(stage, d)
	s.reply(R(hr.Code, hr.Enhanced, hr.Message))
	if hr.Disconnect {
		s.quit = true
	}
}

// flush sends buffered replies.
func (s *session) flush() error {
	if s.bw.Buffered() == 0 {
		return nil
	}
	s.setWriteDeadline(time.Now().Add(s.lim.cmdTimeout))
	return s.bw.Flush()
}

func (s *session) closeConn() {
	if s.bw.Buffered() > 0 {
		s.setWriteDeadline(time.Now().Add(closeTimeout))
		s.bw.Flush()
	}
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	c.Close()
}

// readCommand waits for the next command line. The read deadline is the
// command timeout. Once Shutdown has started, a session outside a mail
// transaction gets no more commands; one inside a transaction may finish it
// until Shutdown's deadline.
func (s *session) readCommand() ([]byte, error) {
	if s.srv.forced.Load() || (s.srv.shutting.Load() && s.tx == nil) {
		return nil, errShutdown
	}
	if !s.lineBuffered() {
		s.mu.Lock()
		if s.srv.shutting.Load() && s.tx == nil {
			s.mu.Unlock()
			return nil, errShutdown
		}
		s.conn.SetReadDeadline(time.Now().Add(s.lim.cmdTimeout))
		s.idle, s.idleTx = true, s.tx != nil
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.idle, s.idleTx = false, false
			s.mu.Unlock()
		}()
	}
	return s.readLine()
}

// lineBuffered reports whether a whole line waits in the read buffer, so
// that reading it does not block.
func (s *session) lineBuffered() bool {
	n := s.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := s.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// readLine reads one CRLF-terminated line of at most maxLine bytes and
// returns it without the CRLF; the slice is valid until the next read. A
// longer line is discarded to its end without being held in memory. Replies
// are flushed first when the read may block (PIPELINING: a batch of
// commands gets its replies in one write).
func (s *session) readLine() ([]byte, error) {
	if !s.lineBuffered() {
		if err := s.flush(); err != nil {
			return nil, err
		}
	}
	line, err := s.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = s.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > s.lim.maxLine {
		return nil, errLineTooLong
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errBareLF
	}
	return line[:len(line)-2], nil
}

func (s *session) setReadDeadline(t time.Time) {
	s.mu.Lock()
	if s.srv.forced.Load() {
		t = aLongTimeAgo
	}
	s.conn.SetReadDeadline(t)
	s.mu.Unlock()
}

func (s *session) setWriteDeadline(t time.Time) {
	s.mu.Lock()
	if s.srv.forced.Load() {
		if limit := time.Now().Add(forcedWrite); t.After(limit) {
			t = limit
		}
	}
	s.conn.SetWriteDeadline(t)
	s.mu.Unlock()
}

// wakeIdle ends a wait for a command outside a transaction, or a TLS
// handshake, at once (Shutdown).
func (s *session) wakeIdle() {
	s.mu.Lock()
	if s.idle && !s.idleTx {
		s.conn.SetReadDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()
}

// force ends whatever the session is reading (Shutdown's ctx is done).
func (s *session) force() {
	s.mu.Lock()
	s.conn.SetReadDeadline(aLongTimeAgo)
	s.conn.SetWriteDeadline(time.Now().Add(forcedWrite))
	s.mu.Unlock()
}

// beginData starts reading message content: the read deadline is the data
// block timeout, refreshed as content flows, and never past the message
// timeout.
func (s *session) beginData() {
	s.rd.data = true
	s.rd.count = 0
	s.rd.end = time.Now().Add(s.lim.msgTimeout)
	s.setReadDeadline(s.rd.deadline())
}

func (s *session) endData() { s.rd.data = false }

// connReader is what the session's bufio.Reader reads from: the current
// conn (plain or TLS), refreshing the read deadline during message content.
type connReader struct {
	s     *session
	data  bool
	count int
	end   time.Time // message deadline
}

func (r *connReader) Read(p []byte) (int, error) {
	n, err := r.s.conn.Read(p)
	if r.data && n > 0 {
		if r.count += n; r.count >= refreshEvery {
			r.count = 0
			r.s.setReadDeadline(r.deadline())
		}
	}
	return n, err
}

func (r *connReader) deadline() time.Time {
	if t := time.Now().Add(r.s.lim.blockTimeout); t.Before(r.end) {
		return t
	}
	return r.end
}

// hookSession is the read-only view of the session for hooks.
func (s *session) hookSession() hook.Session {
	return hook.Session{
		ID:       s.id,
		Listener: s.srv.opt.Listener.Name,
		ClientIP: s.ip,
		Port:     s.port,
		HELO:     s.helo,
		ESMTP:    s.esmtp,
		TLS:      s.tls,
		AuthUser: s.authUser,
	}
}

// dispatch runs a stage; without hooks, or without handlers at the stage,
// it answers Continue without making anything. Handlers see
// the notes of the connection and of the transaction, and the notes they
// write go to the transaction while there is one, else to the connection
// (Haraka's two scopes): transaction notes end with it. Handlers named in
// Effects.Skip are skipped for the rest of the transaction (Haraka's
// skip_plugins).
func (s *session) dispatch(ctx context.Context, r hook.Request) hook.Result {
	if !s.runs(r.Stage) {
		return hook.Result{} // and no request made for nobody
	}
	req := new(hook.Request) // made here, not for the stages passed over
	*req = r
	return s.run(ctx, req)
}

// dispatchRcpt is dispatch at the rcpt stage for rcpt, given by value:
// the request and its copy of rcpt are one allocation, made only when
// the stage runs (a pointer to the caller's rcpt in a request would put
// it on the heap at every RCPT, hooks or not).
func (s *session) dispatchRcpt(ctx context.Context, env *envelope.Envelope, rcpt envelope.Recipient) hook.Result {
	if !s.runs(sdk.StageRcpt) {
		return hook.Result{}
	}
	r := &struct {
		req  hook.Request
		rcpt envelope.Recipient
	}{rcpt: rcpt}
	r.req = hook.Request{Stage: sdk.StageRcpt, Envelope: env, Rcpt: &r.rcpt}
	return s.run(ctx, &r.req)
}

// runs reports whether a dispatch of stage may call a handler.
func (s *session) runs(stage sdk.Stage) bool {
	return s.srv.hooks != nil && (s.srv.runner == nil || s.srv.runner.Runs(stage))
}

// run completes req with the session's view, skips and notes, runs it,
// and keeps the notes and skips the handlers gave. req is not changed
// once handed to the chain.
func (s *session) run(ctx context.Context, req *hook.Request) hook.Result {
	if req.Session == nil {
		if s.hs == nil || *s.hs != s.hookSession() {
			hs := s.hookSession()
			s.hs = &hs
		}
		req.Session = s.hs
	}
	tx := s.tx
	req.Notes = s.notes
	if tx != nil {
		req.Skip = tx.skip
		req.Notes = hook.MergeNotes(s.notes, tx.notes)
	}
	res := s.srv.hooks.Dispatch(ctx, req)
	switch {
	case tx == nil:
		s.notes = hook.MergeNotes(s.notes, res.Effects.Notes)
	default:
		tx.notes = hook.MergeNotes(tx.notes, res.Effects.Notes)
		if len(res.Effects.Skip) > 0 {
			tx.skip = append(slices.Clip(tx.skip), res.Effects.Skip...)
		}
	}
	return res
}

// resetTx ends the transaction, discarding any draft.
func (s *session) resetTx() {
	if s.tx == nil {
		return
	}
	if s.tx.draft != nil {
		if err := s.tx.draft.Abort(); err != nil {
			s.log.Warn("smtp: aborting draft", "id", s.tx.draft.ID(), "err", err)
		}
	}
	s.tx = nil
}

func nowPlus(d time.Duration) time.Time { return time.Now().Add(d) }
