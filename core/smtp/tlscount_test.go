package smtp_test

import (
	"context"
	"crypto/tls"
	"maps"
	"net"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// TestTLSHandshakesCounted: the server's stats and a client's counter
// count the same handshakes, by result and version: a full one, one that
// resumed the first's session, and one the client failed (it trusts no
// root), which the server counts as failed too.
func TestTLSHandshakesCounted(t *testing.T) {
	serverTLS, clientTLS := smtptest.TLSConfigs(t)
	addr, _, srv := start(t, func(o *smtp.Options) { o.TLS = serverTLS })
	clientTLS.MinVersion = tls.VersionTLS13
	clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	var counts smtp.TLSCounter
	untrusted := clientTLS.Clone()
	untrusted.RootCAs = nil
	for _, cfg := range []*tls.Config{clientTLS, clientTLS, untrusted} {
		startTLS(t, addr, cfg, &counts)
	}
	want := map[smtp.TLSHandshake]int64{
		{Result: smtp.HandshakeFull, Version: "TLSv1.3"}:    1,
		{Result: smtp.HandshakeResumed, Version: "TLSv1.3"}: 1,
		{Result: smtp.HandshakeFailed}:                      1,
	}
	if got := counts.Counts(); !maps.Equal(got, want) {
		t.Errorf("client counts = %v, want %v", got, want)
	}
	// The server learns of the failed handshake when the client's alert
	// arrives, after the client has returned.
	deadline := time.Now().Add(5 * time.Second)
	for got := srv.Stats().TLSHandshakes; !maps.Equal(got, want); got = srv.Stats().TLSHandshakes {
		if time.Now().After(deadline) {
			t.Fatalf("server counts = %v, want %v", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startTLS opens a session to addr, says STARTTLS under cfg, counting into
// counts, and reads the session's ticket before it quits (TLS 1.3 sends
// it after the handshake).
func startTLS(t *testing.T, addr string, cfg *tls.Config, counts *smtp.TLSCounter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(ctx, conn, smtp.ClientOptions{LocalName: "client.test", TLSHandshakes: counts})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(ctx, cfg); err != nil {
		return // the failed handshake's case
	}
	if err := c.Noop(ctx); err != nil { // reads past the ticket
		t.Errorf("NOOP: %v", err)
	}
	c.Quit(ctx)
}
