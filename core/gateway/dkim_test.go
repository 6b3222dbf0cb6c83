package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/dkim/dkimtest"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	gwsmtp "github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk/jsonmail"
)

// dkimRewrite is a predelivery hook that rewrites a message whose Subject
// is "translate": a new body, a field added, one removed, as a
// translation gateway does after the message was queued.
const dkimRewrite = `
function on_predelivery(ctx)
  if ctx.msg:header("Subject") == "translate" then
    ctx.msg:set_body("Hola,\nesto es la traducción.\n")
    ctx.msg:add_header("X-Translated", "es")
    ctx.msg:remove_header("X-Internal")
  end
  return gw.continue()
end
`

// dkimSetup is a gateway that signs for rsa.test (RSA-2048, selector s1)
// and ed.test (Ed25519, selector e1), whose relay client is 127.0.0.2,
// and a real SMTP server on loopback behind it: the MX of dest.test and
// the route of local.test (a domain of the gateway, which outside
// clients may send to).
type dkimSetup struct {
	gw      *gatewaytest.Gateway
	sink    *smtptest.MemorySpool
	dir     string            // the gateway's folder
	records map[string]string // the published keys
	dns     *resolvertest.Server
}

func startDKIM(t *testing.T) *dkimSetup {
	t.Helper()
	s := &dkimSetup{sink: &smtptest.MemorySpool{}, records: map[string]string{}}
	addr, _ := smtptest.StartServer(t, gwsmtp.Options{Listener: config.DefaultListener("sink"), LocalDomains: []string{"dest.test", "local.test"}, Spool: s.sink})
	_, port, _ := net.SplitHostPort(addr)
	path := gatewaytest.WriteConfig(t, fmt.Sprintf(`
hostname = "mx.gw.test"
data_dir = "data"
domains  = ["local.test"]
listener "mx" { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.2/32"] }
delivery {
  port = %s
  tls  = "none"
  route "local.test" { via = "%s" }
}
lua "rewrite" { path = "rewrite.lua" }
inject {
  address = "127.0.0.1:0"
  token   = "an-injection-token-for-tests"
}
dkim "rsa.test" {
  selector = "s1"
  key_file = "dkim/rsa.test.s1.pem"
}
dkim "ed.test" {
  selector = "e1"
  key_file = "dkim/ed.test.e1.pem"
}
`, port, addr))
	s.dir = filepath.Dir(path)
	s.writeKey(t, "rsa", "rsa.test", "s1")
	s.writeKey(t, "ed25519", "ed.test", "e1")
	if err := os.WriteFile(filepath.Join(s.dir, "rewrite.lua"), []byte(dkimRewrite), 0o600); err != nil {
		t.Fatal(err)
	}
	s.dns = resolvertest.Start(t, s.zone())
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Delivery.Resolver = []string{s.dns.Addr()}
	s.gw = gatewaytest.StartConfig(t, cfg)
	return s
}

// writeKey makes a key for selector of domain in dir/dkim and publishes it.
func (s *dkimSetup) writeKey(t *testing.T, algorithm, domain, selector string) {
	t.Helper()
	k, err := dkim.GenerateKey(algorithm, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := k.PEM()
	os.MkdirAll(filepath.Join(s.dir, "dkim"), 0o700)
	if err := os.WriteFile(filepath.Join(s.dir, "dkim", domain+"."+selector+".pem"), p, 0o600); err != nil {
		t.Fatal(err)
	}
	s.records[selector+"._domainkey."+domain] = k.Record()
	if s.dns != nil {
		s.dns.Replace(t, s.zone())
	}
}

// zone is the DNS of the test: the sink as dest.test's MX, and the keys
// as TXT records split into 255-octet strings (Key.TXT's form).
func (s *dkimSetup) zone() string {
	z := "mx.sink.test. IN A 127.0.0.1\ndest.test. IN MX 10 mx.sink.test.\n"
	for name, rec := range s.records {
		var parts []string
		for len(rec) > 0 {
			n := min(len(rec), 255)
			parts = append(parts, `"`+rec[:n]+`"`)
			rec = rec[n:]
		}
		z += name + ". IN TXT ( " + strings.Join(parts, " ") + " )\n"
	}
	return z
}

// send submits a message from the client address local (127.0.0.2 is a
// relay client, 127.0.0.1 is not).
func (s *dkimSetup) send(t *testing.T, local, from, to, header string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", s.gw.Addr(t, "mx"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, "mx.gw.test")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "From: <" + from + ">\r\nTo: <" + to + ">\r\nDate: Sun, 6 Dec 2026 16:00:00 +0000\r\nMessage-ID: <" +
		fmt.Sprint(time.Now().UnixNano()) + "@gw.test>\r\n" + header + "\r\nHello,\r\n\r\nthe  report is attached.\r\n"
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(to); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, msg)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// inject posts doc to the injection endpoint (an authenticated client).
func (s *dkimSetup) inject(t *testing.T, doc jsonmail.Document) {
	t.Helper()
	b, _ := json.Marshal(doc)
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.gw.Addr(t, "inject")+"/v1/messages", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer an-injection-token-for-tests")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("inject: %s", resp.Status)
	}
}

// received waits for the sink's message whose header has marker and
// returns it as the next hop holds it (its own Received on top).
func (s *dkimSetup) received(t *testing.T, marker string) []byte {
	t.Helper()
	var got []byte
	ok := gatewaytest.Eventually(15*time.Second, func() bool {
		for _, m := range s.sink.Messages() {
			if d := m.Data(); strings.Contains(string(d), marker) {
				got = d
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no message with %q reached the next hop", marker)
	}
	return got
}

// goVerify is go-msgauth's verdict on msg, keys from the DNS server.
func (s *dkimSetup) goVerify(t *testing.T, msg []byte) []*msgdkim.Verification {
	t.Helper()
	r, err := resolver.New(resolver.Options{Servers: []string{s.dns.Addr()}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	vs, err := msgdkim.VerifyWithOptions(strings.NewReader(string(msg)), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return r.TXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// signedBy checks that msg carries one signature, of domain d with
// algorithm a, and that dkimpy and go-msgauth both pass it.
func (s *dkimSetup) signedBy(t *testing.T, msg []byte, d, sel, a string) {
	t.Helper()
	vs := s.goVerify(t, msg)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != d {
		t.Fatalf("go-msgauth: %+v, want one passing signature by %s; message:\n%s", vs, d, msg)
	}
	flat := strings.ReplaceAll(string(msg), "\r\n ", "")
	for _, tag := range []string{"a=" + a + ";", "s=" + sel + ";", "c=relaxed/relaxed;"} {
		if !strings.Contains(flat, tag) {
			t.Errorf("signature lacks %s:\n%s", tag, msg)
		}
	}
	if got := dkimtest.Verify(t, msg, s.records); got != "pass" {
		t.Errorf("dkimpy: %s; message:\n%s", got, msg)
	}
}

// TestDKIMSigning: through the real server to a real next hop, what a
// relay client sends for a domain with a key leaves signed (RSA and
// Ed25519, a subdomain by its parent's block, after a predelivery
// rewrite), as does what the injection endpoint takes (an authenticated
// session), and verifies with dkimpy and go-msgauth; an outside client's
// mail and mail from a domain without a block leave unsigned.
func TestDKIMSigning(t *testing.T) {
	s := startDKIM(t)
	s.send(t, "127.0.0.2", "alice@rsa.test", "bob@dest.test", "Subject: rsa\r\n")
	s.send(t, "127.0.0.2", "carol@mail.ed.test", "bob@dest.test", "Subject: ed25519\r\n")
	s.send(t, "127.0.0.2", "alice@rsa.test", "bob@dest.test", "Subject: translate\r\nX-Internal: 42\r\n")
	s.send(t, "127.0.0.2", "dave@nokey.test", "bob@dest.test", "Subject: no block\r\n")
	s.send(t, "127.0.0.1", "alice@rsa.test", "bob@local.test", "Subject: outside\r\n")
	s.inject(t, jsonmail.Document{Envelope: jsonmail.Envelope{From: "app@rsa.test", To: []string{"bob@dest.test"}}, Subject: "injected", Text: "From the API."})

	s.signedBy(t, s.received(t, "Subject: rsa\r\n"), "rsa.test", "s1", "rsa-sha256")
	s.signedBy(t, s.received(t, "Subject: ed25519\r\n"), "ed.test", "e1", "ed25519-sha256")
	translated := s.received(t, "Subject: translate\r\n")
	if !strings.Contains(string(translated), "X-Translated: es") || strings.Contains(string(translated), "X-Internal") ||
		!strings.Contains(string(translated), "traducción") {
		t.Fatalf("the predelivery rewrite did not happen:\n%s", translated)
	}
	s.signedBy(t, translated, "rsa.test", "s1", "rsa-sha256")
	s.signedBy(t, s.received(t, "Subject: injected\r\n"), "rsa.test", "s1", "rsa-sha256")
	for _, marker := range []string{"Subject: no block\r\n", "Subject: outside\r\n"} {
		if msg := s.received(t, marker); strings.Contains(string(msg), "DKIM-Signature") {
			t.Errorf("%q was signed:\n%s", marker, msg)
		}
	}
	// Above our Received: the signature is the first field the next hop got.
	msg := string(s.received(t, "Subject: rsa\r\n"))
	if i, j := strings.Index(msg, "DKIM-Signature:"), strings.Index(msg, "by mx.gw.test"); i < 0 || j < 0 || i > j {
		t.Errorf("the signature is not above our Received:\n%s", msg)
	}
}

// TestDKIMReload: a reload reads the key files again and swaps the keys
// in: mail after it is signed with the new selector's key.
func TestDKIMReload(t *testing.T) {
	s := startDKIM(t)
	s.send(t, "127.0.0.2", "alice@rsa.test", "bob@dest.test", "Subject: before\r\n")
	s.signedBy(t, s.received(t, "Subject: before\r\n"), "rsa.test", "s1", "rsa-sha256")

	s.writeKey(t, "ed25519", "rsa.test", "s2")
	hcl, err := os.ReadFile(s.gw.Path)
	if err != nil {
		t.Fatal(err)
	}
	hcl = []byte(strings.Replace(string(hcl), `selector = "s1"
  key_file = "dkim/rsa.test.s1.pem"`, `selector = "s2"
  key_file = "dkim/rsa.test.s2.pem"`, 1))
	if err := os.WriteFile(s.gw.Path, hcl, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.gw.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.send(t, "127.0.0.2", "alice@rsa.test", "bob@dest.test", "Subject: after\r\n")
	s.signedBy(t, s.received(t, "Subject: after\r\n"), "rsa.test", "s2", "ed25519-sha256")
}
