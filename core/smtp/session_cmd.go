package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// handle runs the command hook, then the command.
//
// A Drop from the command hook discards the message for DATA and BDAT
// (354 or 250, content read and thrown away). For every other verb there
// is no message to discard, so Drop ends the session like a Drop at helo:
// 421 4.7.0 and close.
//
// For VRFY and EXPN, an Accept that carries Effects.ReplyLines is the
// answer: 250 with those lines (RFC 5321 §3.5: one mailbox a line for
// EXPN); for HELP, 214 with those lines. An Accept without lines, like
// Continue, gets the built-in answer.
func (s *session) handle(ctx context.Context, cmd Command) {
	res := s.commandHook(ctx, cmd)
	d := res.Decision
	switch d.Verdict {
	case sdk.Reject, sdk.Defer:
		if cmd.Verb == "BDAT" {
			// The chunk follows the command whatever the answer.
			if n, _, err := ParseBDAT(cmd.Arg); err == nil && !s.drain(n) {
				return
			}
		}
		s.replyDecision(sdk.StageCommand, d)
		return
	case sdk.Drop:
		if cmd.Verb != "DATA" && cmd.Verb != "BDAT" {
			s.reply(R(421, enh470, s.srv.opt.Hostname+" Closing connection"))
			s.quit = true
			return
		}
	case sdk.Accept:
		if lines := res.Effects.ReplyLines; len(lines) > 0 {
			switch cmd.Verb {
			case "VRFY", "EXPN":
				s.reply(Reply{Code: 250, Enhanced: enh215, Lines: replyLines(lines)})
				return
			case "HELP":
				s.reply(Reply{Code: 214, Enhanced: enh200, Lines: replyLines(lines)})
				return
			}
		}
	}
	drop := d.Verdict == sdk.Drop
	switch cmd.Verb {
	case "EHLO":
		s.cmdHello(ctx, cmd.Arg, true)
	case "HELO":
		s.cmdHello(ctx, cmd.Arg, false)
	case "MAIL":
		s.cmdMail(ctx, cmd.Arg)
	case "RCPT":
		s.cmdRcpt(ctx, cmd.Arg)
	case "DATA":
		s.cmdData(ctx, cmd.Arg, drop)
	case "BDAT":
		s.cmdBDAT(ctx, cmd.Arg, drop)
	case "RSET":
		if cmd.Arg != "" {
			s.reply(R(501, enh554, "Syntax: RSET"))
			return
		}
		s.resetTx()
		s.reply(R(250, enh200, "Ok"))
	case "NOOP":
		s.reply(R(250, enh200, "Ok"))
	case "QUIT":
		s.reply(R(221, enh200, "Bye"))
		s.quit = true
	case "HELP":
		s.reply(R(214, enh200, "See RFC 5321"))
	case "VRFY":
		s.reply(R(252, enh250, "Cannot VRFY user, but will accept message and attempt delivery"))
	case "EXPN":
		s.reply(R(502, enh551, "EXPN not available"))
	case "TURN":
		s.reply(R(502, enh551, "TURN not supported"))
	case "ETRN":
		s.cmdETRN(ctx, cmd.Arg)
	case "STARTTLS":
		s.cmdStartTLS(ctx, cmd.Arg)
	case "AUTH":
		s.cmdAuth(ctx, cmd.Arg)
	default:
		s.reply(R(500, enh551, "Unrecognized command"))
	}
}

// commandHook runs the command stage. For AUTH only the mechanism is
// passed on: the rest of the line is a credential.
func (s *session) commandHook(ctx context.Context, cmd Command) hook.Result {
	arg := cmd.Arg
	if cmd.Verb == "AUTH" {
		arg, _, _ = strings.Cut(arg, " ")
	}
	req := hook.Request{Stage: sdk.StageCommand, Command: cmd.Verb, Arg: arg}
	if s.tx != nil {
		req.Envelope = &s.tx.env
	}
	return s.dispatch(ctx, req)
}

// maxReplyText is the longest text of a reply line a hook may give: a
// reply line is at most 512 octets with its code and CRLF (RFC 5321
// §4.5.3.1.5).
const maxReplyText = 512 - len("250-2.1.5 \r\n")

// replyLines makes a hook's reply lines safe to send: control characters
// become '?', and a line too long is cut.
func replyLines(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		l = headerSafe(l)
		if len(l) > maxReplyText {
			l = strings.ToValidUTF8(l[:maxReplyText], "")
		}
		out[i] = l
	}
	return out
}

// cmdHello answers EHLO and HELO.
func (s *session) cmdHello(ctx context.Context, arg string, ehlo bool) {
	arg = strings.TrimSpace(arg)
	if arg == "" {
		if ehlo {
			s.reply(R(501, enh554, "Syntax: EHLO hostname"))
		} else {
			s.reply(R(501, enh554, "Syntax: HELO hostname"))
		}
		return
	}
	s.resetTx()
	s.helo, s.esmtp = "", false
	hs := s.hookSession()
	hs.HELO, hs.ESMTP = arg, ehlo
	res := s.dispatch(ctx, hook.Request{Stage: sdk.StageHelo, Session: &hs})
	switch res.Decision.Verdict {
	case sdk.Reject, sdk.Defer, sdk.Drop:
		s.replyDecision(sdk.StageHelo, res.Decision)
		return
	}
	s.helo, s.esmtp = arg, ehlo
	host := s.srv.opt.Hostname
	if !ehlo {
		s.reply(Reply{Code: 250, Lines: []string{host}})
		return
	}
	s.reply(Reply{Code: 250, Lines: s.ehloLines(arg)})
}

// ehloLines are the EHLO reply: greeting line, then the keywords.
func (s *session) ehloLines(arg string) []string {
	size := "SIZE"
	if s.lim.maxMessage > 0 {
		size = "SIZE " + itoa(s.lim.maxMessage)
	}
	lines := []string{
		s.srv.opt.Hostname + " Hello " + arg,
		"PIPELINING",
		size,
		"8BITMIME",
		"SMTPUTF8",
		"ENHANCEDSTATUSCODES",
		"CHUNKING",
		"BINARYMIME",
		"DSN",
	}
	if s.srv.opt.ETRN != nil {
		lines = append(lines, "ETRN")
	}
	if s.srv.opt.TLS != nil && !s.tls {
		lines = append(lines, "STARTTLS")
	}
	if s.tls { // RFC 8689 §2: only where the session is under TLS
		lines = append(lines, "REQUIRETLS")
	}
	if s.authOffered() {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	return lines
}

// replyParseErr answers a MAIL or RCPT argument the parser refused.
func (s *session) replyParseErr(err error) {
	switch {
	case errors.Is(err, ErrUnknownParam):
		s.reply(R(555, enh554, "Unsupported parameter"))
	case errors.Is(err, ErrUTF8Required): // RFC 6531 §3.5
		s.reply(R(553, enh567, "UTF-8 addresses need SMTPUTF8"))
	case errors.Is(err, ErrBadParamValue):
		s.reply(R(501, enh554, "Invalid parameter value"))
	case errors.Is(err, envelope.ErrBadAddress):
		s.reply(R(501, enh554, "Bad address syntax"))
	default:
		s.reply(R(501, enh554, "Syntax error in parameters or arguments"))
	}
}

func (s *session) cmdMail(ctx context.Context, arg string) {
	switch {
	case s.helo == "":
		s.reply(R(503, enh551, "Send EHLO/HELO first"))
		return
	case s.tx != nil:
		s.reply(R(503, enh551, "Nested MAIL command"))
		return
	case s.srv.opt.Listener.AuthRequired && s.authUser == "":
		s.reply(R(530, enh570, "Authentication required"))
		return
	}
	m, err := ParseMail(arg)
	if err != nil {
		s.replyParseErr(err)
		return
	}
	if !s.esmtp && (m.Size != 0 || m.Body != "" || m.SMTPUTF8 || m.Ret != "" || m.EnvID != "" || m.Auth != "" || m.RequireTLS) {
		s.reply(R(555, enh554, "ESMTP parameters need EHLO"))
		return
	}
	if m.RequireTLS && !s.tls {
		// RFC 8689 §4.1 names no reply for this; 530 is RFC 3207's
		// "issue STARTTLS first", 5.7.10 RFC 5248's "Encryption Needed".
		s.reply(R(530, enh5710, "REQUIRETLS needs TLS: issue STARTTLS first"))
		return
	}
	if s.lim.maxMessage > 0 && m.Size > s.lim.maxMessage {
		s.reply(R(552, enh534, "Message size exceeds fixed maximum message size"))
		return
	}
	if !s.spoolHasRoom(m.Size) || !s.senderDomainExists(ctx, m.From) {
		return
	}
	tx := &txn{env: envelope.Envelope{
		Sender:   m.From,
		Size:     m.Size,
		Body:     m.Body,
		SMTPUTF8: m.SMTPUTF8,
		Ret:      m.Ret,
		EnvID:    m.EnvID,
		Auth:     m.Auth,
		// RequireTLS: RFC 8689 §4.1; TLSOptional is set at the end of
		// the data, from the header as spooled, when this is not set.
		RequireTLS: m.RequireTLS,
	}}
	s.fillClient(&tx.env)
	s.tx = tx // the mail hook's notes and skips are the transaction's
	res := s.dispatch(ctx, hook.Request{Stage: sdk.StageMail, Envelope: &tx.env})
	switch res.Decision.Verdict {
	case sdk.Reject, sdk.Defer:
		s.resetTx()
		s.replyDecision(sdk.StageMail, res.Decision)
		return
	case sdk.Drop:
		tx.blackhole = true
	}
	if a := res.Effects.Sender; a != nil {
		tx.env.Sender = *a
	}
	s.reply(R(250, enh210, "Ok"))
}

func (s *session) cmdRcpt(ctx context.Context, arg string) {
	tx := s.tx
	if tx == nil {
		s.reply(R(503, enh551, "Need MAIL command"))
		return
	}
	r, err := ParseRcpt(arg, tx.env.SMTPUTF8)
	if err != nil {
		s.replyParseErr(err)
		return
	}
	if !s.esmtp && (r.To.Notify != 0 || r.To.ORCPT != "") {
		s.reply(R(555, enh554, "ESMTP parameters need EHLO"))
		return
	}
	if tx.accepted >= s.lim.maxRcpt {
		s.reply(R(452, enh453, "Too many recipients"))
		return
	}
	rcpt := r.To
	if r.Postmaster {
		rcpt = s.postmasterRcpt(rcpt)
	}
	if tx.blackhole {
		tx.accepted++
		tx.addRecipient(rcpt)
		s.reply(R(250, enh215, "Ok"))
		return
	}
	res := s.dispatchRcpt(ctx, &tx.env, rcpt)
	switch res.Decision.Verdict {
	case sdk.Reject, sdk.Defer:
		s.replyDecision(sdk.StageRcpt, res.Decision)
		return
	case sdk.Drop:
		tx.accepted++
		tx.dropped++
		s.reply(R(250, enh215, "Ok"))
		return
	case sdk.Accept:
		// An explicit Accept is the only thing that widens relaying.
	default:
		if !r.Postmaster && !s.mayRelay(rcpt.Address) {
			s.reply(R(550, enh571, "Relay access denied"))
			return
		}
	}
	tx.accepted++
	tx.addRecipients(rcpt, res.Effects.Recipients)
	s.reply(R(250, enh215, "Ok"))
}

// postmasterRcpt is the recipient RCPT TO:<postmaster> stands for: this
// host's postmaster (RFC 5321 §4.5.1), never an address without a domain,
// which delivery would route like any domain and bounce to whatever MAIL
// FROM named. Like Postfix, which always accepts <postmaster> and
// delivers it locally, the session accepts it whatever the relay rule
// says (a hook may still refuse it). NOTIFY becomes NEVER: the sender of
// mail to <postmaster> is whoever the client claims, so a failed delivery
// must not carry the client's message back to that address.
func (s *session) postmasterRcpt(r envelope.Recipient) envelope.Recipient {
	s.log.Debug("smtp: <postmaster> is delivered to the postmaster", "rcpt", s.srv.postmaster.String())
	r.Address = s.srv.postmaster
	r.Notify = envelope.NotifyNever
	return r
}

// mayRelay is the built-in relay rule: a local domain, a client in the
// relay networks, or an authenticated client where that is allowed.
func (s *session) mayRelay(to envelope.Address) bool {
	if s.srv.local[to.DomainFold()] {
		return true
	}
	return s.inRelayNetworks() || (s.authUser != "" && s.srv.opt.RelayAuthenticated)
}

// inRelayNetworks reports whether the client is in Options.RelayNetworks.
func (s *session) inRelayNetworks() bool {
	for _, p := range s.srv.opt.RelayNetworks {
		if s.ip.IsValid() && p.Contains(s.ip) {
			return true
		}
	}
	return false
}

// fillClient records the client facts in env.
func (s *session) fillClient(env *envelope.Envelope) {
	if s.ip.IsValid() {
		env.ClientIP = s.ip.String()
	}
	env.ClientHELO = s.helo
	env.AuthUser = s.authUser
	env.TLS = s.tls
	env.Submitted = s.authUser != "" || s.inRelayNetworks()
}

func (s *session) cmdStartTLS(ctx context.Context, arg string) {
	switch {
	case s.srv.opt.TLS == nil:
		s.reply(R(502, enh551, "STARTTLS not available"))
		return
	case s.tls:
		s.reply(R(503, enh551, "TLS already active"))
		return
	case arg != "":
		s.reply(R(501, enh554, "Syntax: STARTTLS"))
		return
	case s.srv.shutting.Load():
		// No handshake starts once Shutdown has begun (handshake): the
		// client hears why rather than a 220 and a close.
		s.reply(R(421, enh432, s.srv.opt.Hostname+" Service shutting down"))
		s.quit = true
		return
	}
	s.reply(R(220, enh200, "Ready to start TLS"))
	if err := s.flush(); err != nil {
		s.connFailed(err)
		return
	}
	// Whatever the client sent after STARTTLS before the handshake was
	// not protected by TLS: drop it unanswered (CVE-2011-0411).
	if n := s.br.Buffered(); n > 0 {
		s.log.Info("smtp: discarding data pipelined after STARTTLS", "bytes", n)
	}
	s.br.Reset(&s.rd)
	if !s.handshake(ctx) {
		s.quit = true
		return
	}
	// RFC 3207 §4.2: forget everything learnt before the handshake.
	s.resetTx()
	s.helo, s.esmtp, s.authUser, s.notes = "", false, "", nil
}

// handshake runs the server side of a TLS handshake on the connection,
// under the command timeout, for STARTTLS or implicit TLS; false means
// it failed (logged; the caller closes).
//
// The handshake is idle time for Shutdown, outside any transaction (the
// client has sent no mail on this connection yet, and STARTTLS ends any
// transaction): wakeIdle ends it at once, and none starts once Shutdown
// has begun, so a silent client cannot hold a stop for its grace period.
func (s *session) handshake(ctx context.Context) bool {
	tc := tls.Server(s.conn, s.srv.opt.TLS)
	s.mu.Lock()
	if s.srv.shutting.Load() {
		s.mu.Unlock()
		s.log.Debug("smtp: no TLS handshake: server shutting down")
		return false
	}
	s.conn.SetDeadline(time.Now().Add(s.lim.cmdTimeout))
	s.idle, s.idleTx = true, false
	s.mu.Unlock()
	err := tc.HandshakeContext(ctx)
	s.srv.handshakes.count(tc, err)
	s.mu.Lock()
	s.idle = false
	if err == nil {
		s.conn = tc
	}
	s.mu.Unlock()
	if err != nil {
		level := slog.LevelInfo
		if s.srv.shutting.Load() {
			level = slog.LevelDebug // ended by wakeIdle, most likely
		}
		s.log.Log(ctx, level, "smtp: TLS handshake failed", "err", err)
		return false
	}
	s.bw.Reset(tc)
	s.tls = true
	st := tc.ConnectionState()
	s.log.Debug("smtp: TLS established", "version", tls.VersionName(st.Version),
		"cipher", tls.CipherSuiteName(st.CipherSuite))
	return true
}

// minSpoolReserve is the free space the spool keeps when there is no
// max_message_size to reckon it from.
const minSpoolReserve = 64 << 20

// spoolHasRoom reports whether the spool has room for a message of the
// declared size (0: not declared), when Options.FreeSpace says how much is
// free; false means it has replied 452 4.3.1. The spool keeps a reserve
// for the messages already accepted (their records change as they are
// delivered): 1.5 × max_message_size, Postfix's default queue_minfree, or
// minSpoolReserve without a maximum. A failed look-up is logged and lets
// the mail through: the commit still fails safely on a full disk.
func (s *session) spoolHasRoom(size int64) bool {
	free := s.srv.opt.FreeSpace
	if free == nil {
		return true
	}
	n, err := free()
	if err != nil {
		s.log.Warn("smtp: free space of the spool unknown", "err", err)
		return true
	}
	reserve := int64(minSpoolReserve)
	if m := s.lim.maxMessage; m > 0 {
		reserve = m + min(m/2, math.MaxInt64-m)
	}
	if n < reserve || size > n-reserve {
		s.log.Warn("smtp: not enough free space for the spool", "free", n, "size", size, "reserve", reserve)
		s.reply(R(452, enh431, "Insufficient system storage"))
		return false
	}
	return true
}

// senderDomainExists checks the sender's domain when the listener asks for
// it (verify_sender_domain) and Options.VerifySender is set; false means it
// has replied 550 5.1.8 (no such domain) or 450 4.1.8 (look-up failed).
// The null sender and address literals are not checked.
func (s *session) senderDomainExists(ctx context.Context, from envelope.Address) bool {
	verify := s.srv.opt.VerifySender
	if !s.srv.opt.Listener.VerifySenderDomain || verify == nil ||
		from.IsNull() || from.Domain == "" || strings.HasPrefix(from.Domain, "[") {
		return true
	}
	domain := from.DomainFold()
	ok, err := verify(ctx, domain)
	switch {
	case err != nil:
		s.log.Warn("smtp: sender domain look-up failed", "domain", domain, "err", err)
		s.reply(R(450, enh418, "Sender address rejected: Domain lookup failed"))
		return false
	case !ok:
		s.log.Info("smtp: sender domain not found", "domain", domain)
		s.reply(R(550, enh518, "Sender address rejected: Domain not found"))
		return false
	}
	return true
}

// cmdETRN answers ETRN (RFC 1985): start delivering the mail queued for a
// domain. Clients in the relay networks and authenticated clients may ask.
// "ETRN domain" and "ETRN @domain" name the domain; "#queue" names are
// not supported.
func (s *session) cmdETRN(ctx context.Context, arg string) {
	etrn := s.srv.opt.ETRN
	node := strings.TrimSpace(arg)
	switch {
	case etrn == nil:
		s.reply(R(502, enh551, "ETRN not available"))
		return
	case s.helo == "":
		s.reply(R(503, enh551, "Send EHLO/HELO first"))
		return
	case s.tx != nil:
		s.reply(R(503, enh551, "ETRN not allowed during a mail transaction"))
		return
	case node == "":
		s.reply(R(501, enh554, "Syntax: ETRN domain"))
		return
	case strings.HasPrefix(node, "#"):
		s.reply(R(458, enh454, "Queue names are not supported"))
		return
	}
	domain, ok := etrnDomain(node)
	if !ok {
		s.reply(R(501, enh554, "Syntax: ETRN domain"))
		return
	}
	if !s.inRelayNetworks() && s.authUser == "" {
		s.reply(R(459, enh471, "Node "+domain+" not allowed"))
		return
	}
	n, err := etrn(ctx, domain)
	switch {
	case err != nil:
		s.log.Warn("smtp: ETRN failed", "domain", domain, "err", err)
		s.reply(R(458, enh430, "Unable to queue messages for node "+domain))
	case n <= 0:
		s.log.Info("smtp: ETRN", "domain", domain, "messages", 0)
		s.reply(R(251, enh200, "OK, no messages waiting for node "+domain))
	default:
		s.log.Info("smtp: ETRN", "domain", domain, "messages", n)
		s.reply(R(253, enh200, "OK, "+strconv.Itoa(n)+" pending messages for node "+domain+" started"))
	}
}

// etrnDomain returns the domain an ETRN argument names ("domain" or
// "@domain"), lower case without a trailing dot: ASCII letters, digits and
// hyphens in labels of 1 to 63 characters that do not start or end with a
// hyphen, 253 characters in all.
func etrnDomain(node string) (string, bool) {
	d := envelope.FoldDomain(strings.TrimPrefix(node, "@"))
	if d == "" || len(d) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return "", false
			}
		}
	}
	return d, true
}
