package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// proxyV2 is a PROXY v2 header for a TCP connection from src to dst,
// with a TLV the server must skip.
func proxyV2(t testing.TB, src, dst string) []byte {
	t.Helper()
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	proto := proxyproto.TCPv4
	if s.Addr().Is6() {
		proto = proxyproto.TCPv6
	}
	h := &proxyproto.Header{
		Version:           2,
		Command:           proxyproto.PROXY,
		TransportProtocol: proto,
		SourceAddr:        net.TCPAddrFromAddrPort(s),
		DestinationAddr:   net.TCPAddrFromAddrPort(d),
	}
	if err := h.SetTLVs([]proxyproto.TLV{{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("mx.test")}}); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proxyLocalV2 is a PROXY v2 LOCAL header: a balancer's health check.
func proxyLocalV2(t testing.TB) []byte {
	t.Helper()
	b, err := (&proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clientSeen records the client address each stage's hook saw.
type clientSeen struct {
	mu sync.Mutex
	at map[sdk.Stage]netip.Addr
}

func (c *clientSeen) hooks() hook.Dispatcher {
	c.at = map[sdk.Stage]netip.Addr{}
	return hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
		c.mu.Lock()
		c.at[req.Stage] = req.Session.ClientIP
		c.mu.Unlock()
		return sdk.Decision{}, sdk.Effects{}
	})
}

func (c *clientSeen) get(stage sdk.Stage) netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at[stage]
}

// relayScript sends one message to a domain that is not local: only a
// client in the relay networks (10.0.0.0/8) may.
const relayScript = greeting + "C: EHLO client.test\n" + ehlo + `
	C: MAIL FROM:<a@example.net>
	S: 250 2.1.0 Ok
	C: RCPT TO:<b@elsewhere.test>
	S: 250 2.1.5 Ok
	C: DATA
	S: 354 End data with <CR><LF>.<CR><LF>
	C: x
	C: .
	S: 250 2.0.0 Ok: queued as M0001
	C: QUIT
	S: 221 2.0.0 Bye
	EOF
`

// TestProxyTrusted: a header from a balancer in proxy_protocol (v1, v2
// with a TLV) makes its client the session's for every stage: the relay
// networks, the hooks, the envelope and the Received field.
func TestProxyTrusted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header func(t *testing.T) []byte
		client string
		lit    string // in the Received field
	}{
		{"v1 tcp4", func(*testing.T) []byte { return []byte("PROXY TCP4 10.1.2.3 192.0.2.25 51234 25\r\n") },
			"10.1.2.3", "[10.1.2.3]"},
		{"v2 tcp4", func(t *testing.T) []byte { return proxyV2(t, "10.9.8.7:40000", "192.0.2.25:25") },
			"10.9.8.7", "[10.9.8.7]"},
		{"v2 tcp6 mapped", func(t *testing.T) []byte { return proxyV2(t, "[::ffff:10.0.0.9]:40000", "[::ffff:192.0.2.25]:25") },
			"10.0.0.9", "[10.0.0.9]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen clientSeen
			addr, spool, _ := start(t, func(o *smtp.Options) {
				o.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
				o.Hooks = seen.hooks()
			})
			c := smtptest.Dial(t, addr)
			c.Send(tc.header(t))
			c.Run(relayScript)
			m := wantMessages(t, spool, 1)[0]
			if m.Envelope.ClientIP != tc.client {
				t.Errorf("envelope ClientIP %q, want %q", m.Envelope.ClientIP, tc.client)
			}
			if want := "Received: from client.test (" + tc.lit + ")"; !strings.HasPrefix(string(m.Header), want) {
				t.Errorf("header %q, want it to start %q", m.Header, want)
			}
			for _, st := range []sdk.Stage{sdk.StageConnect, sdk.StageMail, sdk.StageData, sdk.StageDisconnect} {
				if got := seen.get(st); got.String() != tc.client {
					t.Errorf("hook at %s saw %v, want %s", st, got, tc.client)
				}
			}
		})
	}
}

// TestProxyRefused: a balancer's connection without a valid header, and a
// header from a client not in proxy_protocol, are closed without a reply
// to what they sent.
func TestProxyRefused(t *testing.T) {
	trusted := func(o *smtp.Options) {
		o.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
		o.ProxyHeaderTimeout = 300 * time.Millisecond
	}
	untrusted := func(o *smtp.Options) {
		o.Listener.ProxyProtocol = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	}
	for _, tc := range []struct {
		name   string
		mod    func(*smtp.Options)
		send   func(t *testing.T) []byte
		script string
	}{
		{"trusted, no header in time", trusted, nil, "EOF"},
		{"trusted, SMTP instead", trusted, func(*testing.T) []byte { return []byte("EHLO client.test\r\n") }, "EOF"},
		{"trusted, bad v1", trusted, func(*testing.T) []byte { return []byte("PROXY TCP4 10.1.2.3 nonsense\r\n") }, "EOF"},
		{"trusted, v1 without CR", trusted, func(*testing.T) []byte { return []byte("PROXY TCP4 10.1.2.3 192.0.2.1 1 2\n") }, "EOF"},
		{"trusted, v2 unix", trusted, func(t *testing.T) []byte {
			b, err := (&proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
				SourceAddr: &net.UnixAddr{Name: "/a", Net: "unix"}, DestinationAddr: &net.UnixAddr{Name: "/b", Net: "unix"}}).Format()
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, "EOF"},
		{"untrusted v1", untrusted, nil, greeting + `
			C: PROXY TCP4 10.1.2.3 192.0.2.25 51234 25
			EOF`},
		{"untrusted v2", untrusted, nil, greeting + `
			B: \r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x0a\x01\x02\x03\xc0\x00\x02\x19\xc8\x22\x00\x19
			EOF`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool, _ := start(t, tc.mod)
			c := smtptest.Dial(t, addr)
			if tc.send != nil {
				c.Send(tc.send(t))
			}
			c.Run(tc.script)
			wantMessages(t, spool, 0)
		})
	}
}

// TestProxyUntrustedPlain: on a listener with proxy_protocol, a client not
// in it that sends no header is served as itself.
func TestProxyUntrustedPlain(t *testing.T) {
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Listener.ProxyProtocol = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		o.RelayNetworks = []netip.Prefix{smtptest.Loopback()}
	})
	smtptest.Run(t, addr, relayScript)
	if got := wantMessages(t, spool, 1)[0].Envelope.ClientIP; got != "127.0.0.1" {
		t.Errorf("ClientIP %q, want 127.0.0.1", got)
	}
}

// TestProxyLocal: a LOCAL header (a health check) leaves the balancer's
// own address.
func TestProxyLocal(t *testing.T) {
	var seen clientSeen
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
		o.Hooks = seen.hooks()
	})
	c := smtptest.Dial(t, addr)
	c.Send(proxyLocalV2(t))
	c.Run(greeting + `
		C: QUIT
		S: 221 2.0.0 Bye
		EOF`)
	if got := seen.get(sdk.StageConnect); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("connect hook saw %v, want 127.0.0.1", got)
	}
}

// TestProxyPerIPLimit: max_connections_per_ip counts the clients the
// headers name, not the balancer.
func TestProxyPerIPLimit(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
		o.Listener.MaxConnectionsPerIP = 1
	})
	first := smtptest.Dial(t, addr)
	first.Send([]byte("PROXY TCP4 192.0.2.1 192.0.2.25 1000 25\r\n"))
	first.Run(greeting)
	other := smtptest.Dial(t, addr)
	other.Send([]byte("PROXY TCP4 192.0.2.2 192.0.2.25 1000 25\r\n"))
	other.Run(greeting)
	again := smtptest.Dial(t, addr)
	again.Send([]byte("PROXY TCP4 192.0.2.1 192.0.2.25 1001 25\r\n"))
	again.Run(`
		S: 421 4.7.0 mx.test Too many connections, try again later
		EOF`)
}

// TestProxyShutdownPending: a stop does not wait for a balancer's header
// that has not come.
func TestProxyShutdownPending(t *testing.T) {
	addr, _, srv := start(t, func(o *smtp.Options) {
		o.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
		o.ProxyHeaderTimeout = time.Minute
	})
	c := smtptest.Dial(t, addr)
	time.Sleep(50 * time.Millisecond) // accepted, waiting for the header
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Shutdown took %v with a connection waiting for its header", d)
	}
	c.Run("EOF")
}

// FuzzProxyHeader feeds arbitrary bytes, as a balancer in proxy_protocol,
// through a real server: it must greet exactly when the bytes start with
// a header it takes (a PROXY or LOCAL header for TCP over IPv4 or IPv6),
// and otherwise close without a word; never panic or hang.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 10.1.2.3 192.0.2.25 51234 25\r\nEHLO x\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 25\r\nQUIT\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP4 10.1.2.3\r\n"))
	f.Add([]byte("EHLO client.test\r\n"))
	f.Add([]byte(""))
	f.Add(append(proxyV2(f, "10.9.8.7:40000", "192.0.2.25:25"), "NOOP\r\n"...))
	f.Add(proxyV2(f, "[2001:db8::7]:40000", "[2001:db8::1]:25"))
	f.Add(proxyLocalV2(f))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x31\x00\x00"))

	opt := baseOptions()
	opt.Spool = &smtptest.MemorySpool{}
	opt.Listener.ProxyProtocol = []netip.Prefix{smtptest.Loopback()}
	opt.ProxyHeaderTimeout = time.Second
	opt.Log = slog.New(slog.DiscardHandler)
	addr, _ := smtptest.StartServer(f, opt)

	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			conn.Write(data)
			conn.(*net.TCPConn).CloseWrite() // the server reads to the end, then closes
		}()
		out, err := io.ReadAll(conn)
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the server: %v (got %q)", err, out)
		}
		greeted := bytes.HasPrefix(out, []byte(greeting[len("S: "):len(greeting)-1]+"\r\n"))
		if want := takesHeader(data); greeted != want || (!greeted && len(out) > 0) {
			t.Errorf("server sent %q to %q; want a greeting: %v", out, data, want)
		}
	})
}

// takesHeader is the fuzz test's oracle: whether data starts with a
// header the server must take.
func takesHeader(data []byte) bool {
	h, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(data), 8<<10))
	if err != nil {
		return false
	}
	if h.Command.IsLocal() || h.TransportProtocol.IsUnspec() {
		return true
	}
	_, _, ok := h.TCPAddrs()
	return ok && (h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6())
}
