package smtp_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestShutdownSTARTTLSInTransaction: Shutdown lets a session in a mail
// transaction go on, so a client there may still send STARTTLS. The
// server answers "220 Ready to start TLS" and only then does handshake
// see that Shutdown has begun and refuse to start the handshake, closing
// the connection: the client, promised TLS, sees the handshake fail
// (which an opportunistic client takes as a reason to retry in clear
// text) and never gets the 421 4.3.2 every other command gets. Before the
// handshake counted as idle time the handshake ran and the 421 came next;
// either that or a 421 instead of the 220 is right.
func TestShutdownSTARTTLSInTransaction(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	addr, _, srv := start(t, func(o *smtp.Options) { o.TLS = serverTLS })
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	reply := func() string {
		t.Helper()
		var last string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return "error: " + err.Error()
			}
			if last = line; len(line) < 4 || line[3] != '-' {
				return strings.TrimSpace(last)
			}
		}
	}
	send := func(cmd string) string {
		t.Helper()
		if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
			return "error: " + err.Error()
		}
		return reply()
	}
	if r := reply(); !strings.HasPrefix(r, "220 ") {
		t.Fatalf("greeting %q", r)
	}
	if r := send("EHLO client.example"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("EHLO: %q", r)
	}
	if r := send("MAIL FROM:<a@example.net>"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("MAIL: %q", r)
	}
	done := shutdown(srv, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // Shutdown has begun and waits for the transaction
	r := send("STARTTLS")
	if strings.HasPrefix(r, "421 ") {
		<-done
		return // refused before the promise: fine
	}
	if !strings.HasPrefix(r, "220 ") {
		t.Fatalf("STARTTLS during Shutdown: %q, want 421 (or 220 and a handshake)", r)
	}
	cfg := clientTLS.Clone()
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		t.Errorf("STARTTLS during Shutdown answered 220, then the handshake failed: %v; want 421 4.3.2 instead of the 220, or the handshake and then the 421", err)
	}
	<-done
}
