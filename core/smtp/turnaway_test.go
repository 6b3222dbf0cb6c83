package smtp_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp"
)

// TestImplicitTLSTurnAwayBounded: the connection limit is what bounds
// the connections (file descriptors, goroutines, TLS handshakes) a client
// costs. Since an implicit-TLS listener turns a client over the limit away
// with a TLS handshake, each connection over the limit is held for the
// whole turnAwayTimeout (5s) waiting for a ClientHello that need never
// come, and nothing bounds how many are held at once: a client that opens
// connections as fast as it can holds rate × 5s descriptors (and can make
// the server sign a handshake for each), all past max_connections. Before,
// the 421 went into the socket buffer and the connection closed at once.
// A fix that caps the turn-away handshakes in flight (closing the rest at
// once, as before) or cuts their time keeps at most a few of these 64
// open; main keeps every one of them for 5s.
func TestImplicitTLSTurnAwayBounded(t *testing.T) {
	const flood, bound = 64, 16
	tlsOpts := implicitTLS(t)
	addr, _, _ := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Listener.MaxConnections = 1
	})
	first, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(first).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
		t.Fatalf("first greeting %q, %v", line, err)
	}
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	time.Sleep(1500 * time.Millisecond)
	held := 0
	var b [1]byte
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Read(b[:]); errors.Is(err, os.ErrDeadlineExceeded) {
			held++ // the server still holds it open, waiting
		}
	}
	if held > bound {
		t.Errorf("%d of %d silent connections over max_connections = 1 still held open by the server after 1.5s; want at most %d (turn-aways in flight must be bounded)", held, flood, bound)
	}
}
