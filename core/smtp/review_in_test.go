package smtp_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp"
)

// TestImplicitTLSTurnedAwayOverTLS: a client over a connection limit on
// an implicit-TLS listener gets its "421 Too many connections" in clear
// text, which its TLS stack reads as a bad record ("first record does
// not look like a TLS handshake"): the reply it must retry on is never
// seen. On such a listener the refusal belongs after the handshake (as
// Postfix's smtpd in wrapper mode does), or the connection should just be
// closed.
func TestImplicitTLSTurnedAwayOverTLS(t *testing.T) {
	tlsOpts := implicitTLS(t)
	addr, _, _ := start(t, func(o *smtp.Options) {
		tlsOpts(o)
		o.Listener.MaxConnectionsPerIP = 1
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
	second, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("second connection: TLS handshake failed (%v); want the 421 over TLS", err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(second).ReadString('\n'); !strings.HasPrefix(line, "421 ") {
		t.Errorf("second connection read %q, %v; want 421", line, err)
	}
}
