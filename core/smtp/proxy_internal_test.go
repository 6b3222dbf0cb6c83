package smtp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/pires/go-proxyproto"
)

// TestReadProxyHeader pins what readProxyHeader makes of a connection's
// first bytes: the client, what follows the header (intact), and which
// failures are quiet (errNoProxyBytes) or loud.
func TestReadProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		client  string // "" = the zero AddrPort
		rest    string
		wantErr error // nil with fails: any error
		fails   bool
	}{
		{name: "v1 tcp4", in: "PROXY TCP4 192.0.2.7 192.0.2.25 51234 25\r\nEHLO x\r\n",
			client: "192.0.2.7:51234", rest: "EHLO x\r\n"},
		{name: "v1 tcp6", in: "PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n",
			client: "[2001:db8::7]:40000"},
		{name: "v1 unknown", in: "PROXY UNKNOWN\r\nQUIT\r\n", rest: "QUIT\r\n"},
		{name: "v2 local", in: "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"},
		{name: "v2 tcp4", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07\xc0\x00\x02\x19\x9c\x40\x00\x19x",
			client: "192.0.2.7:40000", rest: "x"},
		{name: "closed at once", in: "", fails: true, wantErr: errNoProxyBytes},
		{name: "SMTP", in: "EHLO x\r\n", fails: true, wantErr: proxyproto.ErrNoProxyProtocol},
		{name: "v1 cut", in: "PROXY TCP4 192.0.2.7", fails: true, wantErr: proxyproto.ErrCantReadVersion1Header},
		{name: "v2 udp", in: "\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c\xc0\x00\x02\x07\xc0\x00\x02\x19\x9c\x40\x00\x19", fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer server.Close()
			go func() {
				client.Write([]byte(tc.in))
				client.Close()
			}()
			server.SetReadDeadline(time.Now().Add(time.Second))
			conn, got, err := readProxyHeader(server)
			switch {
			case tc.fails:
				if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("readProxyHeader = %v, %v; want the error %v", got, err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatalf("readProxyHeader: %v", err)
			}
			var want netip.AddrPort
			if tc.client != "" {
				want = netip.MustParseAddrPort(tc.client)
			}
			if got != want {
				t.Errorf("client %v, want %v", got, want)
			}
			rest, err := io.ReadAll(conn)
			if err != nil || string(rest) != tc.rest {
				t.Errorf("after the header %q (%v), want %q", rest, err, tc.rest)
			}
		})
	}
}

// nopSpool is a Spool the server never reaches in these tests.
type nopSpool struct{}

func (nopSpool) Create(context.Context) (Draft, error) { return nil, io.ErrUnexpectedEOF }

// TestShutdownBeforeProxyHeaderRead: accept registers a balancer's
// connection as pending (addPending) and only then starts the goroutine
// that reads its header. A Shutdown that runs between the two sets the
// pending connection's read deadline in the past, and that must hold: the
// header's deadline is set by addPending, not by readProxyHeader. (It was
// set by readProxyHeader, which overwrote Shutdown's with
// now+ProxyHeaderTimeout: the stop waited for the whole header timeout,
// 10s by default.) The test replays that interleaving step by step.
func TestShutdownBeforeProxyHeaderRead(t *testing.T) {
	lb := netip.MustParsePrefix("127.0.0.0/8")
	s, err := NewServer(Options{
		Hostname:           "mx.test",
		Spool:              nopSpool{},
		Listener:           config.Listener{ProxyProtocol: []netip.Prefix{lb}},
		ProxyHeaderTimeout: 3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ip, _ := remoteIP(conn)

	// accept: the connection is pending, its goroutine not yet running.
	if !s.addPending(conn) {
		t.Fatal("addPending refused the connection")
	}
	// Shutdown runs now, and gets through its pending loop.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- s.Shutdown(ctx) }()
	for !s.shutting.Load() {
		time.Sleep(time.Millisecond)
	}
	s.mu.Lock() // Shutdown holds mu while it sets the pending deadlines
	_, pending := s.pending[conn]
	s.mu.Unlock()
	if !pending {
		t.Fatal("the connection is not pending")
	}
	// Then the goroutine accept started gets to run.
	go s.acceptProxied(conn, ip)

	err = <-stopped
	if d := time.Since(began); err != nil || d > 500*time.Millisecond {
		t.Errorf("Shutdown = %v after %v, want nil at once (the balancer's header never came)", err, d)
	}
}

var _ Spool = nopSpool{}
