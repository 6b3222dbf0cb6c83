package smtp

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

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
			conn, got, err := readProxyHeader(server, time.Second)
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
