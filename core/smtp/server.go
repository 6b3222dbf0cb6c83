package smtp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/authguard"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/mailauth"
	"github.com/mailgate/gateway/core/workers"
)

// Spool is where the server puts accepted messages (core/queue implements
// it; `gateway sink` has one that counts).
type Spool interface {
	Create(ctx context.Context) (Draft, error)
}

// Draft is one message being received. The server writes the content
// (CRLF line endings, dot-unstuffed) and then either commits or aborts.
type Draft interface {
	ID() string // queue ID, known from Create on (used in the Received header)
	io.Writer
	// Commit stores env, header (trace and hook header fields, prepended to
	// the content) and the content durably: when it returns nil, the
	// message survives a crash (fsync'd). Only then does the server say 250.
	Commit(ctx context.Context, env *envelope.Envelope, header []byte) error
	// Abort discards the draft; safe after a failed Commit and twice.
	Abort() error
	// Open returns the content written so far (without the header of
	// Commit, which is not known yet), for the data hook's view of the
	// message and for rewriting it. The draft stays open: it may be read
	// while nothing is written, before Commit or Abort. A spool that keeps
	// no content returns an error; the server opens a draft only when a
	// hook asks for the message or for changes to it.
	Open() (io.ReadCloser, error)
}

// Authenticator checks AUTH PLAIN/LOGIN credentials.
type Authenticator interface {
	Authenticate(ctx context.Context, user, pass string) (bool, error)
}

// Options configure a Server.
//
// Zero values in Listener stand for config.DefaultListener's
// (MaxLineLength, MaxRecipients, MaxErrors, MaxHops and the timeouts). A
// zero MaxMessageSize, MaxHeaderSize, MaxConnections or MaxConnectionsPerIP
// means no limit.
type Options struct {
	Hostname string
	Listener config.Listener // limits, timeouts, auth_required, bare line endings

	LocalDomains []string // recipients here are accepted from anyone
	// Postmaster is the mailbox RCPT TO:<postmaster> (any case, no
	// domain) is delivered to (RFC 5321 §4.5.1): the config's
	// delivery.postmaster; zero = postmaster@Hostname.
	Postmaster         envelope.Address
	RelayNetworks      []netip.Prefix // clients here may relay anywhere
	RelayAuthenticated bool           // authenticated clients may relay

	// TLS is the certificate for STARTTLS, or for TLS from the first
	// byte when Listener.TLS.Implicit (RFC 8314 §3.3). nil: no TLS.
	TLS   *tls.Config
	Auth  Authenticator // nil: no AUTH offered
	Hooks hook.Dispatcher
	Spool Spool
	Log   *slog.Logger

	// AuthGuard limits AUTH failures per client network and runs Auth's
	// checks on its bounded pool; one guard serves every listener of a
	// gateway. nil: no limit, and checks run at once.
	AuthGuard *authguard.Guard

	// ETRN starts delivery of queued mail for domain (RFC 1985) and
	// reports how many messages are waiting for it; nil = ETRN not offered
	// (502 5.5.1).
	ETRN func(ctx context.Context, domain string) (int, error)
	// FreeSpace reports the bytes free where the spool keeps messages;
	// nil = not checked. MAIL is refused early with 452 4.3.1 when the
	// declared SIZE and a reserve do not fit (see spoolHasRoom), rather
	// than at the end of the data with 451 4.3.0.
	FreeSpace func() (int64, error)
	// MailAuth checks mail from clients neither in RelayNetworks nor
	// authenticated (SPF, DKIM, DMARC, ARC) at the end of DATA, before the
	// data hook: its Authentication-Results goes on top of the message,
	// forged ones are removed, hooks see the results (hook.Request.Auth),
	// and under dmarc = "enforce" a failing message may be refused. nil:
	// no checks.
	MailAuth *mailauth.Checker
	// VerifySender reports whether a sender domain exists (MX, A or AAAA);
	// nil = no check. Only consulted when Listener.VerifySenderDomain is set.
	VerifySender func(ctx context.Context, domain string) (bool, error)
	// ProxyHeaderTimeout is how long a balancer in
	// Listener.ProxyProtocol has to send its PROXY header; 0 = 10s.
	ProxyHeaderTimeout time.Duration
}

// minLineLength is the shortest MaxLineLength allowed: RFC 5321
// §4.5.3.1.4's 512 octets of a command line.
const minLineLength = 512

// Server serves SMTP on listeners. Create it with NewServer.
//
// The connection limits of Options.Listener count every session of the
// server, over all the net.Listeners it serves (one Server stands for one
// listener block of the config).
type Server struct {
	opt   Options
	log   *slog.Logger
	hooks hook.Dispatcher // nil: no hooks
	// runner is hooks as a hook.Runner, nil when it cannot tell which
	// stages have handlers.
	runner hook.Runner
	local  map[string]bool // LocalDomains, lower case, no trailing dot
	// postmaster is where <postmaster> goes: Options.Postmaster or
	// postmaster@Hostname.
	postmaster envelope.Address
	limits     limits
	idBase     string
	nextID     atomic.Uint64
	buffers    sync.Pool // *[]byte for copying message content

	// root is the parent of every session's ctx; cancel ends it when a
	// shutdown's ctx is done.
	root   context.Context
	cancel context.CancelFunc

	shutting atomic.Bool // Shutdown started: no new commands
	forced   atomic.Bool // Shutdown's ctx is done: end sessions now

	implicitTLS  bool          // TLS from the first byte
	proxyTimeout time.Duration // for a PROXY header

	mu          sync.Mutex
	listeners   map[net.Listener]struct{}
	sessions    map[*session]struct{}
	pending     map[net.Conn]struct{} // no session: waiting for their PROXY header, or being turned away
	turning     int                   // implicit-TLS connections being turned away over TLS (maxTurningAway)
	perIP       map[netip.Addr]int    // sessions per clientKey
	refusals    refusalLog
	refused     map[Refusal]int64 // error replies, by command and code
	wg          sync.WaitGroup
	runners     *workers.Pool // the sessions' goroutines, kept for reuse until Shutdown
	sessionBufs sync.Pool     // *sessionBuffers of ended sessions, for the next ones

	// Counters for Stats, counted by the sessions.
	accepted   atomic.Int64 // messages queued
	rejected   atomic.Int64 // messages refused after their content was received
	handshakes TLSCounter   // TLS handshakes: ServerStats.TLSHandshakes
}

// limits are Options.Listener with defaults filled in.
type limits struct {
	maxMessage    int64
	maxHeader     int64
	maxLine       int
	maxRcpt       int
	maxErrors     int
	maxHops       int // Received fields a message may carry
	maxConns      int
	maxConnsPerIP int
	fixBare       bool
	cmdTimeout    time.Duration
	blockTimeout  time.Duration
	msgTimeout    time.Duration
}

// NewServer checks opt and returns a server.
func NewServer(opt Options) (*Server, error) {
	if opt.Hostname == "" {
		return nil, errors.New("smtp: server needs a hostname")
	}
	if strings.ContainsAny(opt.Hostname, " \t\r\n") {
		return nil, fmt.Errorf("smtp: bad hostname %q", opt.Hostname)
	}
	if opt.Spool == nil {
		return nil, errors.New("smtp: server needs a spool")
	}
	if pm := opt.Postmaster; !pm.IsNull() && (pm.Local == "" || pm.Domain == "") {
		return nil, fmt.Errorf("smtp: postmaster %q is not local@domain", pm.String())
	}
	l := opt.Listener
	if err := checkListener(l, opt.TLS != nil); err != nil {
		return nil, err
	}
	s := &Server{
		opt:        opt,
		log:        opt.Log,
		hooks:      opt.Hooks,
		local:      make(map[string]bool, len(opt.LocalDomains)),
		listeners:  make(map[net.Listener]struct{}),
		sessions:   make(map[*session]struct{}),
		pending:    make(map[net.Conn]struct{}),
		perIP:      make(map[netip.Addr]int),
		postmaster: opt.Postmaster,

		implicitTLS:  l.TLS != nil && l.TLS.Implicit,
		proxyTimeout: orDefault(opt.ProxyHeaderTimeout, defaultProxyHeaderTimeout),
	}
	if s.postmaster.IsNull() {
		s.postmaster = envelope.Address{Local: "postmaster", Domain: opt.Hostname}
	}
	s.runner, _ = opt.Hooks.(hook.Runner)
	s.buffers.New = func() any {
		b := make([]byte, 32<<10)
		return &b
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.refusals = refusalLog{log: s.log, every: refusalLogEvery}
	for _, d := range opt.LocalDomains {
		s.local[envelope.FoldDomain(d)] = true
	}
	def := config.DefaultListener(l.Name)
	s.limits = limits{
		maxMessage:    l.MaxMessageSize,
		maxHeader:     l.MaxHeaderSize,
		maxLine:       orDefault(l.MaxLineLength, def.MaxLineLength),
		maxRcpt:       orDefault(l.MaxRecipients, def.MaxRecipients),
		maxErrors:     orDefault(l.MaxErrors, def.MaxErrors),
		maxHops:       orDefault(l.MaxHops, def.MaxHops),
		maxConns:      l.MaxConnections,
		maxConnsPerIP: l.MaxConnectionsPerIP,
		fixBare:       l.BareLineEndings == "fix",
		cmdTimeout:    orDefault(l.Timeouts.Command, def.Timeouts.Command),
		blockTimeout:  orDefault(l.Timeouts.DataBlock, def.Timeouts.DataBlock),
		msgTimeout:    orDefault(l.Timeouts.Message, def.Timeouts.Message),
	}
	var b [4]byte
	rand.Read(b[:])
	s.idBase = hex.EncodeToString(b[:])
	// The one root context of the server: every session's ctx derives from
	// it, and a shutdown whose deadline passes cancels it.
	s.root, s.cancel = context.WithCancel(context.Background())
	s.runners = workers.New(maxIdleRunners)
	return s, nil
}

// checkListener checks the settings of l the server relies on; hasCert
// says whether Options.TLS is set.
func checkListener(l config.Listener, hasCert bool) error {
	switch l.BareLineEndings {
	case "", "reject", "fix":
	default:
		return fmt.Errorf("smtp: bare_line_endings must be reject or fix, not %q", l.BareLineEndings)
	}
	if l.MaxLineLength != 0 && l.MaxLineLength < minLineLength {
		return fmt.Errorf("smtp: max line length %d is below %d", l.MaxLineLength, minLineLength)
	}
	if l.TLS != nil && l.TLS.Implicit && !hasCert {
		return errors.New("smtp: implicit TLS needs a certificate (Options.TLS)")
	}
	if l.MaxMessageSize < 0 || l.MaxHeaderSize < 0 || l.MaxRecipients < 0 || l.MaxErrors < 0 || l.MaxHops < 0 ||
		l.MaxConnections < 0 || l.MaxConnectionsPerIP < 0 {
		return errors.New("smtp: negative listener limit")
	}
	return nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Serve accepts connections on ln until Shutdown or Close; it returns
// net.ErrClosed after a shutdown. Each session runs in a goroutine owned by
// the server.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return net.ErrClosed
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors is a passing state too:
				// sessions end and free theirs.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("smtp: accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.accept(conn)
	}
}

// accept starts a session for conn, or turns it away when a connection limit
// is reached. A connection from a balancer in Listener.ProxyProtocol is
// served as the client its PROXY header names (acceptProxied); on such a
// listener, anyone else who sends a header is refused (refuseProxyConn).
func (s *Server) accept(conn net.Conn) {
	ip, port := remoteIP(conn)
	switch {
	case s.proxyTrusted(ip):
		if s.addPending(conn) {
			s.runners.Go(func() { s.acceptProxied(conn, ip) })
		}
		return
	case len(s.opt.Listener.ProxyProtocol) > 0:
		conn = &refuseProxyConn{Conn: conn}
	}
	if sess := s.start(conn, ip, port, ""); sess != nil {
		s.runners.Go(func() { sess.serve(s.root) })
	}
}

// start registers a session on conn from ip:port, or turns the connection
// away (nil) when the server is stopping or a connection limit is reached.
func (s *Server) start(conn net.Conn, ip netip.Addr, port int, authUser string) *session {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		conn.Close()
		return nil
	}
	key := clientKey(ip)
	if (s.limits.maxConns > 0 && len(s.sessions) >= s.limits.maxConns) ||
		(s.limits.maxConnsPerIP > 0 && s.perIP[key] >= s.limits.maxConnsPerIP) {
		s.turnAwayLocked(conn, ip)
		return nil
	}
	id := s.idBase + fmt.Sprintf("%06x", s.nextID.Add(1))
	sess := newSession(s, conn, id, ip, port)
	sess.authUser = authUser
	s.sessions[sess] = struct{}{}
	s.perIP[key]++
	s.wg.Add(1)
	s.mu.Unlock()
	return sess
}

// ServeConn serves one session on conn, as if it came from client and had
// already authenticated as authUser ("" = not authenticated), and returns
// when it ends. It is how mail that does not arrive over SMTP (the HTTP
// injection endpoint) goes through exactly the same hooks, relay rule,
// limits and spool as mail that does: the caller talks SMTP to the other
// end of a net.Pipe. It returns net.ErrClosed if the server is stopping.
func (s *Server) ServeConn(conn net.Conn, client netip.AddrPort, authUser string) error {
	sess := s.start(conn, client.Addr().Unmap(), int(client.Port()), authUser)
	if sess == nil {
		if s.shutting.Load() {
			return net.ErrClosed
		}
		return nil // turned away with a 421 the caller reads
	}
	sess.serve(s.root)
	return nil
}

// maxIdleRunners is how many goroutines that served a session a server
// keeps for the next sessions (a session's stack grows to a few tens of
// KiB, which a new goroutine would copy as it grows): more than a busy
// MX's sessions that end between two GCs, which shrink idle stacks.
const maxIdleRunners = 256

// Turning connections away on an implicit-TLS listener costs a handshake
// each: at most maxTurningAway run at once, each within turnAwayTimeout;
// past that a connection is closed without a reply, so that a flood over
// the limit holds no more descriptors and CPU than the limit allows.
const (
	turnAwayTimeout = time.Second
	maxTurningAway  = 16
)

// turnAwayLocked refuses conn from ip for a connection limit (421) and
// unlocks s.mu. The reply goes in clear text, or over TLS on an
// implicit-TLS listener (see turnAway).
func (s *Server) turnAwayLocked(conn net.Conn, ip netip.Addr) {
	n := len(s.sessions)
	reply := R(421, enh470, s.opt.Hostname+" Too many connections, try again later")
	if !s.implicitTLS {
		s.wg.Add(1)
		s.mu.Unlock()
		s.refusals.refused(ip, n)
		go func() { // a write to a pipe (ServeConn) waits for its reader
			defer s.wg.Done()
			defer conn.Close()
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, reply.String()+"\r\n")
		}()
		return
	}
	if s.turning >= maxTurningAway {
		s.mu.Unlock()
		s.refusals.refused(ip, n)
		conn.Close()
		return
	}
	// Pending while it is turned away, with its deadline set first, as
	// addPending does: Shutdown ends a slow TLS handshake at once.
	s.turning++
	conn.SetDeadline(time.Now().Add(turnAwayTimeout))
	s.pending[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.refusals.refused(ip, n)
	go s.turnAway(conn, reply)
}

// turnAway greets conn with r over TLS and closes it, within the deadline
// turnAwayLocked set: the connection is TLS from its first byte (RFC 8314
// §3.3), and a reply in clear text reads as a bad record to the client,
// which then never sees the 421 it should retry on.
func (s *Server) turnAway(conn net.Conn, r Reply) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.turning--
		s.mu.Unlock()
	}()
	defer s.removePending(conn)
	defer conn.Close()
	tc := tls.Server(conn, s.opt.TLS)
	err := tc.Handshake()
	s.handshakes.count(tc, err)
	if err != nil {
		s.log.Debug("smtp: TLS handshake of a connection turned away failed", "err", err)
		return
	}
	io.WriteString(tc, r.String()+"\r\n")
}

// remove forgets an ended session.
func (s *Server) remove(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	key := clientKey(sess.ip)
	if s.perIP[key]--; s.perIP[key] <= 0 {
		delete(s.perIP, key)
	}
	s.mu.Unlock()
}

// clientKey is what max_connections_per_ip counts by: an IPv4 address, or
// the /64 an IPv6 address is in, as the AUTH limiter counts (authguard.Key).
// A /64 is what one site or host is given (RFC 6177), and its holder may use
// any address in it: counted per address, one client would have 2^64 slots.
func clientKey(ip netip.Addr) netip.Addr { return authguard.Key(ip).Addr() }

func remoteIP(conn net.Conn) (netip.Addr, int) {
	switch a := conn.RemoteAddr().(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return ap.Addr().Unmap(), int(ap.Port())
	case nil:
		return netip.Addr{}, 0
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}, 0
		}
		return ap.Addr().Unmap(), int(ap.Port())
	}
}

// Shutdown stops accepting, lets sessions finish their mail transactions,
// and answers every other command with 421 4.3.2 and a close. It returns
// when every session has ended.
//
// A session outside a mail transaction gets the 421 at once (if it is
// waiting for a command) or instead of its next command. A session inside a
// transaction (after MAIL, through the end of DATA or BDAT LAST) may finish
// it, and gets the 421 instead of its first command after. When ctx is
// done first, the server's root context is cancelled (hooks and commits see
// it) and every session's reads end at once; Shutdown then returns
// ctx.Err() once the sessions are gone.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.refusals.stop()
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	for sess := range s.sessions {
		sess.wakeIdle()
	}
	for conn := range s.pending {
		conn.SetReadDeadline(aLongTimeAgo) // no session yet: nothing to finish
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.runners.Close()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.forced.Store(true)
	s.cancel()
	s.mu.Lock()
	for sess := range s.sessions {
		sess.force()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// ServerStats are a server's counters since NewServer.
type ServerStats struct {
	SessionsActive   int   // sessions open now
	SessionsTotal    int64 // sessions started (connections turned away at a limit are not counted)
	MessagesAccepted int64 // messages queued: 250 to the end of DATA or BDAT LAST
	MessagesRejected int64 // messages refused with 4xx/5xx after their content was received
	// Refusals counts every 4xx/5xx reply by the command it answered and
	// its code: relay denied at RCPT, a rate limit at MAIL, a bad AUTH.
	Refusals map[Refusal]int64
	// TLSHandshakes counts the server's TLS handshakes: the sessions'
	// (STARTTLS and implicit TLS) and those of implicit-TLS connections
	// turned away at a connection limit, which cost as much.
	TLSHandshakes map[TLSHandshake]int64
}

// Refusal is what ServerStats.Refusals counts by.
type Refusal struct {
	Command  string // the verb in lower case ("mail", "rcpt", "data", …); "connect" for the greeting
	Code     int    // the reply code, 421 to 554
	Enhanced string // "5.7.1"; "" when the reply has none
}

// Add adds o's counters to st (the sum over several servers).
func (st *ServerStats) Add(o ServerStats) {
	st.SessionsActive += o.SessionsActive
	st.SessionsTotal += o.SessionsTotal
	st.MessagesAccepted += o.MessagesAccepted
	st.MessagesRejected += o.MessagesRejected
	addCounts(&st.Refusals, o.Refusals)
	addCounts(&st.TLSHandshakes, o.TLSHandshakes)
}

// addCounts adds the counts of src to *dst, making it if needed.
func addCounts[K comparable](dst *map[K]int64, src map[K]int64) {
	for k, v := range src {
		if *dst == nil {
			*dst = make(map[K]int64, len(src))
		}
		(*dst)[k] += v
	}
}

// countRefusal counts an error reply to verb.
func (s *Server) countRefusal(verb string, r Reply) {
	k := Refusal{Command: strings.ToLower(verb), Code: r.Code}
	if k.Command == "" {
		k.Command = "connect"
	}
	if !r.Enhanced.IsZero() {
		k.Enhanced = r.Enhanced.String()
	}
	s.mu.Lock()
	if s.refused == nil {
		s.refused = make(map[Refusal]int64)
	}
	s.refused[k]++
	s.mu.Unlock()
}

// Stats returns the server's counters; it is safe to call at any time.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	active := len(s.sessions)
	refused := maps.Clone(s.refused)
	s.mu.Unlock()
	return ServerStats{
		SessionsActive:   active,
		SessionsTotal:    int64(s.nextID.Load()),
		MessagesAccepted: s.accepted.Load(),
		MessagesRejected: s.rejected.Load(),
		Refusals:         refused,
		TLSHandshakes:    s.handshakes.Counts(),
	}
}
