package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/textproto"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// holdSink is the next hop of bk.test and other.test: a real SMTP server
// on loopback that keeps what it accepts.
type holdSink struct {
	srv   *smtp.Server
	spool *smtptest.MemorySpool
}

// startHoldSink starts a holdSink as the next hop (MX mx.sink.test) of
// domains, and a DNS server on loopback that says so. It returns the sink,
// its port for delivery { port } and the DNS server's address.
func startHoldSink(t *testing.T, domains ...string) (sink *holdSink, port, dns string) {
	t.Helper()
	sink = &holdSink{spool: &smtptest.MemorySpool{}}
	var addr string
	addr, sink.srv = smtptest.StartServer(t, smtp.Options{
		Listener:     config.DefaultListener("sink"),
		LocalDomains: domains,
		Spool:        sink.spool,
	})
	_, port, _ = net.SplitHostPort(addr)
	zone := "mx.sink.test. IN A 127.0.0.1\n"
	for _, d := range domains {
		zone += d + ". IN MX 10 mx.sink.test.\n"
	}
	return sink, port, resolvertest.Start(t, zone).Addr()
}

// rcpts lists the recipients of each message the sink accepted, in order.
func (s *holdSink) rcpts() []string {
	var out []string
	for _, m := range s.spool.Messages() {
		line := ""
		for i, rc := range m.Envelope.Recipients {
			if i > 0 {
				line += " "
			}
			line += rc.Address.String()
		}
		out = append(out, line)
	}
	return out
}

// wait waits until the sink has as many messages as want, then a little
// longer, and checks that it has exactly those.
func (s *holdSink) wait(t *testing.T, want ...string) {
	t.Helper()
	gatewaytest.Eventually(10*time.Second, func() bool { return len(s.spool.Messages()) >= len(want) })
	time.Sleep(200 * time.Millisecond)
	if diff := cmp.Diff(want, s.rcpts()); diff != "" {
		t.Errorf("messages at the next hop (-want +got):\n%s", diff)
	}
}

// sessions is how many connections the sink has had.
func (s *holdSink) sessions() int64 { return s.srv.Stats().SessionsTotal }

// adminCall makes one request to the gateway's admin API and decodes the
// answer into v.
func adminCall(t *testing.T, g *gatewaytest.Gateway, method, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.Addr(t, "admin")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, body)
	}
}

// send submits one message from a relay client.
func send(t *testing.T, g *gatewaytest.Gateway, rcpts ...string) {
	t.Helper()
	script := "S: 220 *\nC: HELO client.test\nS: 250 *\nC: MAIL FROM:<alice@client.test>\nS: 250 2.1.0 Ok\n"
	for _, r := range rcpts {
		script += "C: RCPT TO:<" + r + ">\nS: 250 2.1.5 Ok\n"
	}
	script += "C: DATA\nS: 354 *\nC: Subject: hold\nC:\nC: Wait for it.\nC: .\nS: 250 2.0.0 Ok: queued as *\nC: QUIT\nS: 221 2.0.0 Bye\n"
	smtptest.Run(t, g.Addr(t, "mx"), script)
}

// TestDomainHold (issue 10): hold_domains keeps bk.test's mail queued
// with no connection while other.test's is delivered; ETRN delivers it
// exactly once; an operator's hold through the admin API holds
// other.test, survives a restart, and its release delivers the mail
// exactly once.
func TestDomainHold(t *testing.T) {
	sink, port, dns := startHoldSink(t, "bk.test", "other.test")
	path := gatewaytest.WriteConfig(t, fmt.Sprintf(`
hostname = "gw.test"
listener "mx" { address = "127.0.0.1:0" }
admin { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.1/32"] }
delivery {
  resolver     = %q
  port         = %s
  retry        = ["1h"]
  hold_domains = ["bk.test"]
}
`, dns, port))

	t.Run("hold_domains and ETRN", func(t *testing.T) {
		g := gatewaytest.StartFile(t, path)
		send(t, g, "bob@bk.test", "carol@other.test")
		sink.wait(t, "carol@other.test")
		if n := sink.sessions(); n != 1 {
			t.Errorf("%d connections to the next hop; want 1, for other.test", n)
		}

		var listed []admin.Message
		adminCall(t, g, "GET", "/v1/queue", &listed)
		if len(listed) != 1 || listed[0].Recipients[0].Held != "hold_domains bk.test" {
			t.Fatalf("queue listing %+v; want bob@bk.test held by hold_domains", listed)
		}
		smtptest.Run(t, g.Addr(t, "mx"), `
			S: 220 *
			C: HELO client.test
			S: 250 *
			C: ETRN bk.test
			S: 253 2.0.0 OK, 1 pending messages for node bk.test started
			C: QUIT
			S: 221 2.0.0 Bye
		`)
		sink.wait(t, "carol@other.test", "bob@bk.test")
		if q := g.Queued(t); len(q) != 0 {
			t.Errorf("%d messages still queued after ETRN", len(q))
		}

		var res admin.DomainResult
		adminCall(t, g, "POST", "/v1/domains/other.test/hold", &res)
		before := sink.sessions()
		send(t, g, "dan@other.test")
		if !g.Log().Wait(5*time.Second, "delivery: held") {
			t.Errorf("the held message was not set aside")
		}
		sink.wait(t, "carol@other.test", "bob@bk.test")
		if n := sink.sessions(); n != before {
			t.Errorf("%d connections to the next hop; want %d: none for held mail", n, before)
		}
	})

	t.Run("restart keeps the operator's hold", func(t *testing.T) {
		g := gatewaytest.StartFile(t, path)
		var holds []admin.DomainHold
		adminCall(t, g, "GET", "/v1/domains", &holds)
		if len(holds) != 2 || holds[0].Domain != "bk.test" || holds[1].Domain != "other.test" || holds[1].Source != "operator" {
			t.Fatalf("held domains after a restart: %+v", holds)
		}
		before := sink.sessions()
		sink.wait(t, "carol@other.test", "bob@bk.test")
		if n := sink.sessions(); n != before {
			t.Errorf("%d connections to the next hop; want %d: none for held mail", n, before)
		}

		var res admin.DomainResult
		adminCall(t, g, "POST", "/v1/domains/other.test/release", &res)
		if res.Count != 1 {
			t.Errorf("release made %d messages due; want 1", res.Count)
		}
		sink.wait(t, "carol@other.test", "bob@bk.test", "dan@other.test")
	})
	t.Run("a reload changes hold_domains", func(t *testing.T) {
		g := gatewaytest.StartFile(t, path)
		editConfig(t, path, `hold_domains = ["bk.test"]`, `hold_domains = ["bk.test", "*.test"]`)
		if code, body := postReload(t, g.Addr(t, "admin")); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		send(t, g, "erin@other.test")
		if !g.Log().Wait(5*time.Second, "delivery: held") {
			t.Errorf("the held message was not set aside")
		}
		sink.wait(t, "carol@other.test", "bob@bk.test", "dan@other.test")

		editConfig(t, path, `hold_domains = ["bk.test", "*.test"]`, `hold_domains = ["bk.test"]`)
		if code, body := postReload(t, g.Addr(t, "admin")); code != 200 {
			t.Fatalf("reload: %d %s", code, body)
		}
		sink.wait(t, "carol@other.test", "bob@bk.test", "dan@other.test", "erin@other.test")
		if g.Log().Wait(0, "restart to apply") {
			t.Errorf("a reload of hold_domains asks for a restart:\n%s", g.Log())
		}
	})
}

// TestDomainHoldExpires: mail for a held domain still expires after
// max_lifetime, without a connection, with the failure DSN a sender gets
// for any expired recipient.
func TestDomainHoldExpires(t *testing.T) {
	sink, port, dns := startHoldSink(t, "bk.test", "client.test")
	g := gatewaytest.Start(t, fmt.Sprintf(`
hostname = "gw.test"
listener "mx" { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.1/32"] }
delivery {
  resolver     = %q
  port         = %s
  retry        = ["1h"]
  max_lifetime = "2s"
  hold_domains = ["bk.test"]
}
`, dns, port))
	send(t, g, "bob@bk.test")
	sink.wait(t, "alice@client.test")
	msgs := sink.spool.Messages()
	if len(msgs) != 1 || !msgs[0].Envelope.Sender.IsNull() {
		t.Fatalf("the next hop got %+v; want one DSN from <>", msgs)
	}
	fields := dsnRecipientFields(t, msgs[0].Body)
	want := map[string]string{
		"Final-Recipient": "rfc822; bob@bk.test",
		"Action":          "failed",
		"Status":          "5.4.7",
		"Diagnostic-Code": "smtp; 451 4.3.2 delivery to bk.test is held (hold_domains bk.test)",
	}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("the DSN's recipient fields (-want +got):\n%s", diff)
	}
	if q := g.Queued(t); len(q) != 0 {
		t.Errorf("%d messages still queued", len(q))
	}
}

// dsnRecipientFields parses a DSN (RFC 3464) with net/mail and
// mime/multipart and returns the fields of its one per-recipient block
// that want names.
func dsnRecipientFields(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("reading the DSN: %v", err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("DSN Content-Type: %v", err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no message/delivery-status part: %v", err)
		}
		if p.Header.Get("Content-Type") != "message/delivery-status" {
			continue
		}
		tp := textproto.NewReader(bufio.NewReader(p))
		if _, err := tp.ReadMIMEHeader(); err != nil { // per-message fields
			t.Fatalf("per-message fields: %v", err)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil && err != io.EOF {
			t.Fatalf("per-recipient fields: %v", err)
		}
		out := map[string]string{}
		for _, k := range []string{"Final-Recipient", "Action", "Status", "Diagnostic-Code", "Remote-Mta"} {
			if v := h.Get(k); v != "" {
				out[k] = v
			}
		}
		return out
	}
}
