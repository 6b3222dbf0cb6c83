package gateway_test

// Issue 12's inbound side through a whole gateway: PROXY protocol behind a
// balancer, implicit TLS (RFC 8314) checked with openssl and swaks.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// proxyScript is the Lua hook of the PROXY test: on the listener behind
// the balancer it refuses at connect a client it sees as the balancer,
// and it writes the address it sees at data into the message.
const proxyScript = `
function on_connect(ctx)
  if ctx.conn.listener == "mx" and ctx.conn.ip == "127.0.0.1" then
    return gw.reject(554, "5.7.1", "hook saw the balancer")
  end
end
function on_data(ctx)
  ctx.msg:add_header("X-Hook-Client", ctx.conn.ip)
end
`

// TestProxyProtocolGateway: through a listener with proxy_protocol, the
// client a v1 or v2 header names is the one the Received field, the
// envelope and a Lua hook see; on a listener whose list does not hold the
// sender of a header, the connection is closed and nothing is queued.
func TestProxyProtocolGateway(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.lua"), []byte(proxyScript), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.StartFile(t, writeFile(t, dir, "gateway.hcl", `
hostname = "mx.test"
listener "mx" {
  address        = "127.0.0.1:0"
  proxy_protocol = ["127.0.0.1/32"]
}
listener "other" {
  address        = "127.0.0.1:0"
  proxy_protocol = ["192.0.2.0/24"]
}
domains = ["example.test"]
lua "client" { path = "client.lua" }
`+gatewaytest.DeadRoute))

	v2, err := (&proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv6,
		SourceAddr:      net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::7]:40000")),
		DestinationAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[2001:db8::1]:25"))}).Format()
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		header []byte
		client string
		lit    string
	}{
		{[]byte("PROXY TCP4 192.0.2.7 192.0.2.25 51234 25\r\n"), "192.0.2.7", "[192.0.2.7]"},
		{v2, "2001:db8::7", "[IPv6:2001:db8::7]"},
	} {
		c := smtptest.Dial(t, g.Addr(t, "mx"))
		c.Send(tc.header)
		c.Run(`
			S: 220 mx.test ESMTP ready
			C: HELO client.test
			S: 250 mx.test
			C: MAIL FROM:<a@sender.test>
			S: 250 2.1.0 Ok
			C: RCPT TO:<b@example.test>
			S: 250 2.1.5 Ok
			C: DATA
			S: 354 End data with <CR><LF>.<CR><LF>
			C: Subject: hi
			C:
			C: x
			C: .
			S~ 250 2.0.0 Ok: queued as \S+
			C: QUIT
			S: 221 2.0.0 Bye
		`)
		msgs := g.Queued(t)
		if len(msgs) != i+1 {
			t.Fatalf("%d messages queued, want %d", len(msgs), i+1)
		}
		m := msgs[i]
		if m.Envelope.ClientIP != tc.client {
			t.Errorf("envelope ClientIP %q, want %q", m.Envelope.ClientIP, tc.client)
		}
		for _, want := range []string{"Received: from client.test (" + tc.lit + ")", "X-Hook-Client: " + tc.client + "\r\n"} {
			if !bytes.Contains(m.Data, []byte(want)) {
				t.Errorf("message %q lacks %q", m.Data, want)
			}
		}
	}

	untrusted := smtptest.Dial(t, g.Addr(t, "other"))
	untrusted.Run(`
		S: 220 mx.test ESMTP ready
		B: PROXY TCP4 192.0.2.7 192.0.2.25 51234 25\r\n
		EOF
	`)
	if n := len(g.Queued(t)); n != 2 {
		t.Errorf("%d messages queued, want the 2 above", n)
	}
	if !g.Log().Wait(5*time.Second, "PROXY header from a client not in proxy_protocol") {
		t.Errorf("no log line for the refused header:\n%s", g.Log())
	}
}

// writeFile writes content to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// smtpsGateway runs a gateway with the smtps listener (implicit
// TLS, AUTH required) and user alice, password "secret".
func smtpsGateway(t *testing.T) (g *gatewaytest.Gateway, dir string) {
	t.Helper()
	dir = t.TempDir()
	smtptest.WriteCertificate(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g = gatewaytest.StartFile(t, writeFile(t, dir, "gateway.hcl", fmt.Sprintf(`
hostname = "mx.test"
listener "smtps" {
  address = "127.0.0.1:0"
  tls {
    cert     = "cert.pem"
    key      = "key.pem"
    implicit = true
  }
  auth_required = true
}
domains = ["example.test"]
auth {
  users = { alice = %q }
}
`, hash)+gatewaytest.DeadRoute))
	return g, dir
}

// needTool skips the test when a Debian tool it drives is missing.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("needs %s (Debian package %s): %v", name, pkg, err)
	}
	return path
}

// TestImplicitTLSOpenSSL: openssl s_client, without -starttls, verifies
// the certificate and gets the greeting and an EHLO reply over TLS, with
// AUTH and REQUIRETLS and without STARTTLS.
func TestImplicitTLSOpenSSL(t *testing.T) {
	openssl := needTool(t, "openssl", "openssl")
	g, dir := smtpsGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", g.Addr(t, "smtps"),
		"-servername", "mx.test", "-CAfile", filepath.Join(dir, "cert.pem"), "-verify_return_error",
		"-quiet", "-nocommands", "-crlf")
	cmd.Stdin = strings.NewReader("EHLO client.test\nQUIT\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	want := "220 mx.test ESMTP ready\r\n250-mx.test Hello client.test\r\n"
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("openssl s_client got %q, want it to start %q", out, want)
	}
	for _, line := range []string{"250-REQUIRETLS\r\n", "250 AUTH PLAIN LOGIN\r\n", "221 2.0.0 Bye\r\n"} {
		if !strings.Contains(string(out), line) {
			t.Errorf("openssl s_client got %q, want a line %q", out, line)
		}
	}
	if strings.Contains(string(out), "STARTTLS") {
		t.Errorf("openssl s_client got %q: STARTTLS offered under implicit TLS", out)
	}
}

// TestImplicitTLSSwaks: swaks --tlsc (TLS on connect) submits a message
// with AUTH PLAIN; it is queued as received under TLS from alice.
func TestImplicitTLSSwaks(t *testing.T) {
	swaks := needTool(t, "swaks", "swaks")
	g, _ := smtpsGateway(t)
	host, port, err := net.SplitHostPort(g.Addr(t, "smtps"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, swaks, "--server", host, "--port", port, "--tlsc",
		"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "secret",
		"--helo", "client.test", "--from", "alice@example.test", "--to", "bob@elsewhere.test",
		"--header", "Subject: over implicit TLS", "--body", "hello", "--timeout", "20")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1; swaks said:\n%s", len(msgs), out)
	}
	e := msgs[0].Envelope
	if !e.TLS || e.AuthUser != "alice" || e.Recipients[0].Address.String() != "bob@elsewhere.test" {
		t.Errorf("envelope TLS %v AuthUser %q Recipients %v, want true, alice, bob@elsewhere.test", e.TLS, e.AuthUser, e.Recipients)
	}
	if !bytes.Contains(msgs[0].Data, []byte(" with ESMTPSA id ")) {
		t.Errorf("message %q: want ESMTPSA in the Received field", msgs[0].Data)
	}
}
