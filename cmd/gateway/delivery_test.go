package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/admin"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
)

// sharedPort finds a TCP port free on every given loopback address, so that
// MX hosts on different addresses can share the one delivery port.
func sharedPort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		ln.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

// sendOne submits one message to the gateway and returns the data reply.
func sendOne(t *testing.T, addr string, from envelope.Address, to ...envelope.Address) smtp.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit(ctx)
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	env := &envelope.Envelope{Sender: from}
	var rcpts []string
	for _, a := range to {
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
		rcpts = append(rcpts, a.String())
	}
	body := fmt.Sprintf("From: <%s>\r\nTo: %s\r\nSubject: test\r\nMessage-ID: <%d@client.test>\r\n\r\nHello.\r\n",
		from, strings.Join(rcpts, ", "), time.Now().UnixNano())
	res, err := c.Send(ctx, env, strings.NewReader(body))
	if err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
	return res.Data
}

// queueList fetches the queue from the admin API.
func queueList(t *testing.T, adminAddr string) []admin.Message {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/v1/queue")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var msgs []admin.Message
	if err := json.NewDecoder(resp.Body).Decode(&msgs); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// savedFiles lists the .eml files a sink saved.
func savedFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// eventually polls cond every 50 ms for up to d.
func eventually(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestDeliveryEndToEnd runs a whole gateway (in-process) that finds its next
// hops through a DNS server on loopback and delivers to `gateway sink`
// processes: one accepting, one answering 4xx, one 5xx, one that drops the
// connection mid-DATA, and the sender's own MX, which receives the bounce.
func TestDeliveryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	port := sharedPort(t, ips...)
	okDir, bounceDir := t.TempDir(), t.TempDir()
	listen := func(ip string) string { return fmt.Sprintf("%s:%d", ip, port) }
	startGateway(t, "sink", "--listen", listen("127.0.0.2"), "--save", okDir)
	startGateway(t, "sink", "--listen", listen("127.0.0.3"), "--rcpt-reply", "450 4.2.0 Mailbox busy")
	startGateway(t, "sink", "--listen", listen("127.0.0.4"), "--rcpt-reply", "550 5.1.1 No such user")
	startGateway(t, "sink", "--listen", listen("127.0.0.5"), "--drop-mid-data")
	startGateway(t, "sink", "--listen", listen("127.0.0.6"), "--save", bounceDir)

	dns := resolvertest.Start(t, `
ok.test.          300 IN MX 10 mx.ok.test.
mx.ok.test.       300 IN A  127.0.0.2
defer.test.       300 IN MX 10 mx.defer.test.
mx.defer.test.    300 IN A  127.0.0.3
fail.test.        300 IN MX 10 mx.fail.test.
mx.fail.test.     300 IN A  127.0.0.4
drop.test.        300 IN MX 10 mx.drop.test.
mx.drop.test.     300 IN A  127.0.0.5
sender.test.      300 IN MX 10 mx.sender.test.
mx.sender.test.   300 IN A  127.0.0.6
`)
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
delivery {
  resolver      = %q
  port          = %d
  retry         = ["1s"]
  delay_warning = "0"
}
admin { address = "127.0.0.1:0" }
`, dns.Addr(), port))
	g := gatewaytest.StartFile(t, cfg)
	mx, adminAddr := g.Addr(t, "mx"), g.Addr(t, "admin")

	alice := envelope.Address{Local: "alice", Domain: "sender.test"}
	for _, to := range []envelope.Address{
		{Local: "a", Domain: "ok.test"},
		{Local: "b", Domain: "defer.test"},
		{Local: "c", Domain: "fail.test"},
		{Local: "d", Domain: "drop.test"},
	} {
		if r := sendOne(t, mx, alice, to); r.Code != 250 {
			t.Fatalf("send to %s: %s", to, r)
		}
	}
	// A bounce that fails must never be bounced to <>.
	if r := sendOne(t, mx, envelope.Address{}, envelope.Address{Local: "e", Domain: "fail.test"}); r.Code != 250 {
		t.Fatalf("send from <>: %s", r)
	}

	if !eventually(10*time.Second, func() bool { return len(savedFiles(t, okDir)) == 1 }) {
		t.Fatalf("ok.test sink got %d messages, want 1; the gateway log follows", len(savedFiles(t, okDir)))
	}
	if !eventually(10*time.Second, func() bool { return len(savedFiles(t, bounceDir)) >= 1 }) {
		t.Fatalf("no bounce reached the sender's MX; the gateway log follows")
	}

	// The queue keeps the deferred ones, with the reply and growing attempts.
	var msgs []admin.Message
	ok := eventually(10*time.Second, func() bool {
		msgs = queueList(t, adminAddr)
		if len(msgs) != 2 {
			return false
		}
		for _, m := range msgs {
			if m.Attempts < 2 {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("queue: %+v; want the defer.test and drop.test messages, each tried at least twice", msgs)
	}
	byDomain := map[string]admin.Recipient{}
	for _, m := range msgs {
		r := m.Recipients[0]
		byDomain[r.Address[strings.IndexByte(r.Address, '@')+1:]] = r
	}
	if r := byDomain["defer.test"]; r.Status != "deferred" || !strings.Contains(r.LastReply, "450 4.2.0 Mailbox busy") {
		t.Errorf("defer.test recipient: %+v; want deferred with the 450 reply", r)
	}
	if r := byDomain["drop.test"]; r.Status != "deferred" || r.LastReply == "" {
		t.Errorf("drop.test recipient: %+v; want deferred with a reason", r)
	}

	// Exactly one bounce: for c@fail.test, to alice; none for the <> message.
	time.Sleep(500 * time.Millisecond)
	bounces := savedFiles(t, bounceDir)
	if len(bounces) != 1 {
		t.Fatalf("sender's MX got %d messages, want exactly 1 bounce", len(bounces))
	}
	var env struct {
		From string   `json:"from"`
		To   []string `json:"to"`
	}
	js, _ := os.ReadFile(strings.TrimSuffix(bounces[0], ".eml") + ".json")
	if err := json.Unmarshal(js, &env); err != nil || env.From != "" || len(env.To) != 1 || env.To[0] != "alice@sender.test" {
		t.Errorf("bounce envelope %s (%v); want from <> to alice@sender.test", js, err)
	}
	raw, _ := os.ReadFile(bounces[0])
	fields := deliveryStatus(t, raw)
	want := map[string]string{
		"Final-Recipient": "rfc822; c@fail.test",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Diagnostic-Code": "smtp; 550 5.1.1 No such user",
	}
	for k, v := range want {
		if got := fields.Get(k); got != v {
			t.Errorf("bounce %s = %q, want %q", k, got, v)
		}
	}
}

// deliveryStatus parses a DSN and returns the first recipient's fields of
// its message/delivery-status part.
func deliveryStatus(t *testing.T, raw []byte) textproto.MIMEHeader {
	t.Helper()
	status, ok := reportParts(t, raw)["message/delivery-status"]
	if !ok {
		t.Fatal("bounce has no message/delivery-status part")
	}
	tr := textproto.NewReader(bufio.NewReader(strings.NewReader(status)))
	if _, err := tr.ReadMIMEHeader(); err != nil { // per-message fields
		t.Fatal(err)
	}
	rcpt, err := tr.ReadMIMEHeader()
	if err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return rcpt
}
