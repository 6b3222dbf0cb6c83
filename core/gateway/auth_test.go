package gateway_test

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"golang.org/x/crypto/bcrypt"
)

// The replies of AUTH the tests expect.
const (
	authOK      = "235 2.7.0 Authentication successful"
	authInvalid = "535 5.7.8 Authentication credentials invalid"
	authLocked  = "454 4.7.0 Too many authentication failures, try again later"
)

// authConfig is a gateway with two listeners that offer AUTH in the clear,
// user alice (password "secret", a bcrypt hash of cost) and the auth
// settings given; mail stays queued.
func authConfig(t testing.TB, cost int, settings string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), cost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`
hostname = "mx.test"
shutdown_timeout = "5s"
listener "mx" {
  address                = "127.0.0.1:0"
  auth_insecure          = true
  max_connections_per_ip = 500
}
listener "submission" {
  address       = "127.0.0.1:0"
  auth_insecure = true
}
domains = ["example.test"]
auth {
  users = { alice = %q }
%s
}
`, hash, settings) + gatewaytest.DeadRoute
}

// client speaks just enough SMTP for these tests; its replies are whole
// strings ("535 5.7.8 …"), the last line of a multi-line one.
type client struct {
	conn  net.Conn
	tp    *textproto.Conn
	until time.Time // if set, no read or write waits past it
}

// dial connects to addr from the address local ("" for any) and reads the
// greeting.
func dial(local, addr string) (*client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &client{conn: conn, tp: textproto.NewConn(conn)}
	if r, err := c.read(); err != nil || !strings.HasPrefix(r, "220 ") {
		conn.Close()
		return nil, fmt.Errorf("greeting %q: %v", r, err)
	}
	return c, nil
}

// cmd sends line and returns the reply.
func (c *client) cmd(line string) (string, error) {
	deadline := time.Now().Add(10 * time.Second)
	if !c.until.IsZero() && c.until.Before(deadline) {
		deadline = c.until
	}
	c.conn.SetDeadline(deadline)
	if err := c.tp.PrintfLine("%s", line); err != nil {
		return "", err
	}
	return c.read()
}

func (c *client) read() (string, error) {
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		return "", err
	}
	lines := strings.Split(msg, "\n")
	return fmt.Sprintf("%d %s", code, lines[len(lines)-1]), nil
}

func (c *client) close() { c.conn.Close() }

// authPlain is the AUTH PLAIN command for user and pass.
func authPlain(user, pass string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass))
}

// tryAuth connects to addr from local, says EHLO, sends one AUTH PLAIN
// and returns its reply.
func tryAuth(local, addr, user, pass string) (string, error) {
	c, err := dial(local, addr)
	if err != nil {
		return "", err
	}
	defer c.close()
	if r, err := c.cmd("EHLO client.test"); err != nil || !strings.HasPrefix(r, "250 ") {
		return "", fmt.Errorf("EHLO: %q, %v", r, err)
	}
	return c.cmd(authPlain(user, pass))
}

// hello connects to addr and says EHLO; the connection is closed at the
// end of the test.
func hello(t *testing.T, addr string) *client {
	t.Helper()
	c, err := dial("", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	if r, err := c.cmd("EHLO client.test"); err != nil || !strings.HasPrefix(r, "250 ") {
		t.Fatalf("EHLO: %q, %v", r, err)
	}
	return c
}

// wantAuth checks the reply to one AUTH on a new connection.
func wantAuth(t *testing.T, local, addr, pass, want string) {
	t.Helper()
	got, err := tryAuth(local, addr, "alice", pass)
	if err != nil || got != want {
		t.Fatalf("AUTH alice/%s from %s: got %q (%v), want %q", pass, addr, got, err, want)
	}
}

// TestAuthLockoutAcrossConnections: failures count for the client's
// address over connections and listeners; the one that reaches the limit
// locks it out. While it lasts even the right password is refused (else
// the lockout would tell a guesser which guess was right, and guessing
// would go on at full speed); after it, the right password works.
func TestAuthLockoutAcrossConnections(t *testing.T) {
	const lockout = 2 * time.Second
	g := gatewaytest.Start(t, authConfig(t, bcrypt.MinCost, `
  auth_failure_limit = 3
  auth_lockout       = "2s"
  auth_failure_delay = "300ms"
`))
	mx, sub := g.Addr(t, "mx"), g.Addr(t, "submission")

	wantAuth(t, "", mx, "secret", authOK) // a success counts nothing
	for i, addr := range []string{mx, sub, mx} {
		start := time.Now()
		wantAuth(t, "127.0.0.1", addr, "guess", authInvalid)
		// The first failure is answered at once, every later one after
		// auth_failure_delay.
		if took := time.Since(start); (i == 0) != (took < 300*time.Millisecond) {
			t.Errorf("failure %d answered after %v", i+1, took)
		}
	}
	locked := time.Now()
	wantAuth(t, "127.0.0.1", mx, "secret", authLocked)
	wantAuth(t, "127.0.0.1", sub, "guess", authLocked)
	// Another client is not locked out.
	wantAuth(t, "127.0.0.2", mx, "secret", authOK)

	// The lockout ends lockout after the failure that started it.
	var got string
	ok := gatewaytest.Eventually(lockout+3*time.Second, func() bool {
		got, _ = tryAuth("127.0.0.1", mx, "alice", "secret")
		return got == authOK
	})
	if !ok {
		t.Fatalf("AUTH after the lockout: %q", got)
	}
	if took := time.Since(locked); took < lockout-300*time.Millisecond {
		t.Fatalf("the lockout ended after %v, want %v", took, lockout)
	}
	if !g.Log().Wait(time.Second, `msg="authguard: client locked out" part=authguard client=127.0.0.1/32 failures=3 for=2s`) {
		t.Error("no log line for the lockout")
	}
}

// TestAuthLockoutBeforeExchange: a locked-out client is refused at the
// AUTH command, before it sends a password, on a connection it opened
// before the lockout too.
func TestAuthLockoutBeforeExchange(t *testing.T) {
	g := gatewaytest.Start(t, authConfig(t, bcrypt.MinCost, `
  auth_failure_limit = 2
  auth_lockout       = "1h"
  auth_failure_delay = "0s"
`))
	mx := g.Addr(t, "mx")
	early, c := hello(t, mx), hello(t, mx)
	for _, step := range []struct{ cmd, want string }{
		{authPlain("alice", "one"), authInvalid},
		{authPlain("alice", "two"), authInvalid},
		{"AUTH LOGIN", authLocked},
		{"AUTH PLAIN", authLocked},
		{"NOOP", "250 2.0.0 Ok"},
	} {
		if got, err := c.cmd(step.cmd); err != nil || got != step.want {
			t.Fatalf("%s: got %q (%v), want %q", step.cmd, got, err, step.want)
		}
	}
	if got, err := early.cmd("AUTH LOGIN"); err != nil || got != authLocked {
		t.Fatalf("AUTH LOGIN on the early connection: got %q (%v), want %q", got, err, authLocked)
	}
}

// fail2banRegex is README's failregex, with fail2ban's <HOST> as a group.
var fail2banRegex = regexp.MustCompile(strings.ReplaceAll(
	`(?:msg=|"msg":)"smtp: auth failure from <HOST>"`,
	"<HOST>", `([0-9A-Fa-f:.]+)`))

// TestAuthFail2banLine: every failed and every refused attempt logs one
// line README's fail2ban regex matches with the client's address, and a
// user name made to look like that line does not match.
func TestAuthFail2banLine(t *testing.T) {
	g := gatewaytest.Start(t, authConfig(t, bcrypt.MinCost, `
  auth_failure_limit = 2
  auth_failure_delay = "0s"
`))
	mx := g.Addr(t, "mx")
	forged := `x" msg="smtp: auth failure from 192.0.2.66" "msg":"smtp: auth failure from 192.0.2.66"`
	if got, err := tryAuth("127.0.0.3", mx, forged, "guess"); err != nil || got != authInvalid {
		t.Fatalf("AUTH as a forged user: %q, %v", got, err)
	}
	wantAuth(t, "127.0.0.3", mx, "guess", authInvalid)
	wantAuth(t, "127.0.0.3", mx, "guess", authLocked)
	if !g.Log().Wait(time.Second, `reason="locked out"`) || !strings.Contains(g.Log().String(), "192.0.2.66") {
		t.Fatal("no log line for the refused attempt, or none with the forged user")
	}
	var hosts []string
	for _, line := range strings.Split(g.Log().String(), "\n") {
		if m := fail2banRegex.FindAllStringSubmatch(line, -1); m != nil {
			for _, sub := range m {
				hosts = append(hosts, sub[1])
			}
		}
	}
	if strings.Join(hosts, " ") != "127.0.0.3 127.0.0.3 127.0.0.3" {
		t.Fatalf("fail2ban would see %q, want the client thrice", hosts)
	}
}

// TestAuthLockoutIPv6: a client on IPv6 is locked out as one on IPv4,
// separately (the grouping of a /64 is tested in core/authguard and
// core/smtp, since loopback has one IPv6 address).
func TestAuthLockoutIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	path := gatewaytest.WriteConfig(t, authConfig(t, bcrypt.MinCost, `
  auth_failure_limit = 2
  auth_failure_delay = "0s"
`))
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v6 := strings.Replace(string(src), `address       = "127.0.0.1:0"`, `address       = "[::1]:0"`, 1)
	if err := os.WriteFile(path, []byte(v6), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.StartFile(t, path)
	mx, sub := g.Addr(t, "mx"), g.Addr(t, "submission")
	if !strings.HasPrefix(sub, "[::1]:") {
		t.Fatalf("submission listens on %s", sub)
	}
	wantAuth(t, "", sub, "one", authInvalid)
	wantAuth(t, "", sub, "two", authInvalid)
	wantAuth(t, "", sub, "secret", authLocked)
	wantAuth(t, "127.0.0.1", mx, "secret", authOK)
	if !g.Log().Wait(time.Second, `client=::/64 failures=2`) {
		t.Error("the lockout was not of ::1's /64")
	}
}
