package smtp

// This file is the PROXY protocol in front of a session (HAProxy's
// proxy-protocol.txt, v1 and v2, parsed by github.com/pires/go-proxyproto):
// a listener behind a load balancer learns the client's address from the
// header the balancer sends before anything else, so that the relay rule,
// the connection limits, the hooks, SPF and the Received field all see the
// client, not the balancer. Only the balancers in the listener's
// proxy_protocol may send one, and they must.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/pires/go-proxyproto"
)

const (
	// defaultProxyHeaderTimeout is how long a balancer has to send its
	// header (go-proxyproto's default too).
	defaultProxyHeaderTimeout = 10 * time.Second
	// proxyHeaderBuffer bounds a v2 header with its TLVs (which are read
	// and ignored); a bigger one is refused. HAProxy's and the cloud
	// balancers' headers are well under it.
	proxyHeaderBuffer = 8 << 10
)

// errNoProxyBytes is a balancer's connection closed before it sent
// anything: a health check that only connects, not worth a log line at
// info.
var errNoProxyBytes = errors.New("smtp: closed before a PROXY header")

// errUntrustedProxyHeader ends a session whose client, not in
// proxy_protocol, started with a PROXY header: it could name any address.
var errUntrustedProxyHeader = errors.New("smtp: PROXY header from a client not in proxy_protocol")

// proxyTrusted reports whether connections from ip must start with a
// PROXY header.
func (s *Server) proxyTrusted(ip netip.Addr) bool {
	for _, p := range s.opt.Listener.ProxyProtocol {
		if ip.IsValid() && p.Contains(ip) {
			return true
		}
	}
	return false
}

// acceptProxied reads the PROXY header of conn, from the balancer lb, in
// a goroutine of its own (a slow balancer does not hold up Serve's accept
// loop), and serves the session as the client the header names. A
// connection without a valid header in time is closed.
func (s *Server) acceptProxied(conn net.Conn, lb netip.Addr) {
	sess := s.openProxied(conn, lb)
	if sess != nil {
		sess.serve(s.root)
	}
}

// openProxied is acceptProxied up to the session's start: the header is
// read while the connection is pending, under the deadline addPending set
// (Shutdown ends the wait at once).
func (s *Server) openProxied(conn net.Conn, lb netip.Addr) *session {
	defer s.wg.Done() // added by addPending
	c, client, err := s.readPending(conn, lb)
	if err != nil {
		level := slog.LevelInfo
		if errors.Is(err, errNoProxyBytes) {
			level = slog.LevelDebug
		}
		s.log.Log(s.root, level, "smtp: connection closed: no valid PROXY header", "proxy", lb.String(), "err", err)
		conn.Close()
		return nil
	}
	if !client.IsValid() { // LOCAL (a health check), or v1 UNKNOWN: the balancer itself
		ip, port := remoteIP(conn)
		client = netip.AddrPortFrom(ip, uint16(port))
	}
	s.log.Debug("smtp: PROXY header", "proxy", lb.String(), "client", client.String())
	return s.start(c, client.Addr(), int(client.Port()), "")
}

// readPending is readProxyHeader on a pending conn, which is no longer
// pending when it returns: start, which takes it on, checks for Shutdown
// itself, and may make it pending again to turn it away. A panic in the
// parser is an error (the connection is closed, as a session's panic
// closes its own).
func (s *Server) readPending(conn net.Conn, lb netip.Addr) (c net.Conn, client netip.AddrPort, err error) {
	defer s.removePending(conn)
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("smtp: reading a PROXY header panicked", "proxy", lb.String(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("smtp: PROXY header: panic: %v", r)
		}
	}()
	return readProxyHeader(conn)
}

// addPending counts conn as waiting for its PROXY header, with the header
// timeout as its read deadline; false when the server is stopping (conn is
// then closed). The deadline is set here, under mu, before Shutdown can
// see conn: set later, by the goroutine reading the header, it could
// undo Shutdown's and hold the stop for the whole header timeout.
func (s *Server) addPending(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		conn.Close()
		return false
	}
	conn.SetReadDeadline(time.Now().Add(s.proxyTimeout)) // a closed conn fails the read
	s.pending[conn] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) removePending(conn net.Conn) {
	s.mu.Lock()
	delete(s.pending, conn)
	s.mu.Unlock()
}

// readProxyHeader reads the PROXY header, v1 or v2, at the start of conn
// under the read deadline the caller set (addPending), and returns the
// connection to read on after it and the client address it names: the
// zero AddrPort for a LOCAL header (a balancer's health check) or v1's
// UNKNOWN, which stand for the connection's own ends. TLVs are ignored. A missing, malformed, partial
// or late header, or one for something other than TCP over IPv4 or IPv6,
// is an error.
func readProxyHeader(conn net.Conn) (net.Conn, netip.AddrPort, error) {
	br := bufio.NewReaderSize(conn, proxyHeaderBuffer)
	h, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, proxyproto.ErrNoProxyProtocol) && br.Buffered() == 0:
		return nil, netip.AddrPort{}, errNoProxyBytes
	case err != nil:
		return nil, netip.AddrPort{}, fmt.Errorf("smtp: PROXY header: %w", err)
	}
	conn.SetReadDeadline(time.Time{}) // the session sets its own; a closed conn fails it there
	var client netip.AddrPort
	if !h.Command.IsLocal() && !h.TransportProtocol.IsUnspec() {
		src, _, ok := h.TCPAddrs()
		if !ok || !(h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
			return nil, netip.AddrPort{}, fmt.Errorf("smtp: PROXY header for %v, not TCP over IPv4 or IPv6", h.TransportProtocol)
		}
		ap := src.AddrPort()
		client = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	// What the balancer sent after the header (nothing, as a rule: the
	// client waits for our greeting) is read first.
	rest, _ := br.Peek(br.Buffered())
	if len(rest) == 0 {
		return conn, client, nil
	}
	return &prefixConn{Conn: conn, prefix: bytes.Clone(rest)}, client, nil
}

// prefixConn reads prefix, then the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// refuseProxyConn is a connection from a client not in proxy_protocol, on
// a listener that has one: if what the client sends first is a PROXY
// header, the read fails with errUntrustedProxyHeader and the session
// ends. Only the first read is looked at; a header split across reads is
// not recognised, and then reaches the command parser as junk.
type refuseProxyConn struct {
	net.Conn
	checked bool
}

func (c *refuseProxyConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.checked && n > 0 {
		c.checked = true
		if looksLikeProxyHeader(p[:n]) {
			return 0, errUntrustedProxyHeader
		}
	}
	return n, err
}

// looksLikeProxyHeader reports whether b starts like a PROXY header: v1's
// "PROXY ", or at least the first 5 bytes of v2's signature (CR LF CR LF
// NUL, which no SMTP client sends).
func looksLikeProxyHeader(b []byte) bool {
	if bytes.HasPrefix(b, []byte("PROXY ")) {
		return true
	}
	return len(b) >= 5 && bytes.HasPrefix(proxyproto.SIGV2, b[:min(len(b), len(proxyproto.SIGV2))])
}
