package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/smtp"
)

// TestBinaryMIMEEndToEnd: a BINARYMIME message (NUL bytes, bare CR and
// LF, lines far past 998 bytes) submitted over BDAT is relayed over BDAT
// to a `gateway sink` process, which stores it byte for byte behind our
// Received line; the same kind of message to a next hop without
// BINARYMIME bounces with 5.6.3, a failure of ours (no Remote-MTA, not
// "the remote server said"), returning the original byte for byte in a
// 7-bit report.
func TestBinaryMIMEEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	binDir, bounceDir := t.TempDir(), t.TempDir()
	sink := startGateway(t, "sink", "--listen", "127.0.0.1:0", "--save", binDir)
	bounces := startGateway(t, "sink", "--listen", "127.0.0.1:0", "--save", bounceDir)
	plain := startPlainHop(t)
	cfg := writeConfig(t, t.TempDir(), fmt.Sprintf(`
delivery {
  delay_warning = "0"
  route "bin.test" {
    via = %q
    tls = "none"
  }
  route "plain.test" {
    via = %q
    tls = "none"
  }
  route "sender.test" {
    via = %q
    tls = "none"
  }
}
`, sink.addr, plain.addr, bounces.addr))
	g := gatewaytest.StartFile(t, cfg)
	mx := g.Addr(t, "mx")

	var b bytes.Buffer
	b.WriteString("From: <alice@sender.test>\r\nSubject: binary\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n")
	for i := range 30 {
		b.WriteString("\x00NUL\rbare CR\nbare LF\n.\r\n")
		b.Write(bytes.Repeat([]byte{byte(i), 0, '\n', 0xfe, '\r'}, 20_000))
	}
	b.WriteString("no line end at the end\r")
	content := b.Bytes()
	if r := sendBinary(t, mx, "a@bin.test", content, envelope.RetUnset); r.Code != 250 {
		t.Fatalf("submitting to a@bin.test: %s", r)
	}
	if !eventually(10*time.Second, func() bool { return len(savedFiles(t, binDir)) == 1 }) {
		t.Fatalf("the sink got %d messages, want 1", len(savedFiles(t, binDir)))
	}
	eml := savedFiles(t, binDir)[0]
	raw, err := os.ReadFile(eml)
	if err != nil {
		t.Fatal(err)
	}
	sinkReceived, rest := cutReceived(t, raw)
	ours, rest := cutReceived(t, rest)
	if !strings.Contains(sinkReceived, "by sink.test") || !strings.Contains(ours, "by mx.test") {
		t.Errorf("Received fields %q then %q, want the sink's then ours", sinkReceived, ours)
	}
	if !bytes.Equal(rest, content) {
		t.Errorf("the sink stored %d bytes after the Received fields, want the %d submitted, byte for byte", len(rest), len(content))
	}
	var env struct {
		Body string `json:"body"`
	}
	if js, err := os.ReadFile(strings.TrimSuffix(eml, ".eml") + ".json"); err != nil || json.Unmarshal(js, &env) != nil || env.Body != "BINARYMIME" {
		t.Errorf("the sink's envelope says BODY %q (%v), want BINARYMIME", env.Body, err)
	}

	// A next hop without CHUNKING and BINARYMIME: our 5.6.3, at once.
	returned := []byte("Subject: binary\r\n\r\n\x00bare\rCR\xff\r\n")
	if r := sendBinary(t, mx, "b@plain.test", returned, envelope.RetFull); r.Code != 250 {
		t.Fatalf("submitting to b@plain.test: %s", r)
	}
	if !eventually(10*time.Second, func() bool { return len(savedFiles(t, bounceDir)) == 1 }) {
		t.Fatalf("the sender's sink got %d messages, want 1 bounce", len(savedFiles(t, bounceDir)))
	}
	raw, err = os.ReadFile(savedFiles(t, bounceDir)[0])
	if err != nil {
		t.Fatal(err)
	}
	fields := deliveryStatus(t, raw)
	if got := fields.Get("Final-Recipient"); got != "rfc822; b@plain.test" {
		t.Errorf("bounce Final-Recipient = %q, want rfc822; b@plain.test", got)
	}
	if fields.Get("Action") != "failed" || fields.Get("Status") != "5.6.3" || fields.Get("Remote-MTA") != "" {
		t.Errorf("bounce Action %q, Status %q, Remote-MTA %q; want failed, 5.6.3 and no Remote-MTA",
			fields.Get("Action"), fields.Get("Status"), fields.Get("Remote-MTA"))
	}
	if got := fields.Get("Diagnostic-Code"); !strings.HasPrefix(got, "X-Gateway; 554 5.6.3 ") {
		t.Errorf("bounce Diagnostic-Code = %q, want our own (X-Gateway; 554 5.6.3 …)", got)
	}
	parts := reportParts(t, raw)
	if human := parts["text/plain; charset=us-ascii"]; !strings.Contains(human, "the mail system here said: 554 5.6.3") {
		t.Errorf("the bounce's explanation does not say the failure was ours:\n%s", human)
	}
	if orig, ok := parts["message/global"]; !ok || !strings.HasSuffix(orig, string(returned)) {
		t.Errorf("the bounce returns %q, want message/global ending in the original, byte for byte", orig)
	}
	if cmds := plain.commands(); len(cmds) != 0 {
		t.Errorf("the plain hop got %q, want no transaction", cmds)
	}
}

// reportParts is the parts of a DSN by Content-Type, base64 decoded.
func reportParts(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("bounce does not parse: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("bounce Content-Type %q: want multipart/report; report-type=delivery-status", msg.Header.Get("Content-Type"))
	}
	parts := map[string]string{}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = p
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			body = base64.NewDecoder(base64.StdEncoding, p)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		parts[p.Header.Get("Content-Type")] = string(b)
	}
}

// sendBinary submits content with BODY=BINARYMIME (over BDAT) from
// alice@sender.test to rcpt and returns the reply to the message.
func sendBinary(t *testing.T, addr, rcpt string, content []byte, ret envelope.Ret) smtp.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit(ctx)
	local, domain, _ := strings.Cut(rcpt, "@")
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "alice", Domain: "sender.test"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: local, Domain: domain}}},
		Body:       envelope.BodyBinaryMIME,
		Ret:        ret,
	}
	res, err := c.Send(ctx, env, bytes.NewReader(content))
	if err != nil {
		t.Fatalf("send to %s: %v", rcpt, err)
	}
	return res.Data
}

// cutReceived takes the Received field that starts raw off it (with its
// folded lines) and returns the field and what follows.
func cutReceived(t *testing.T, raw []byte) (field string, rest []byte) {
	t.Helper()
	if !bytes.HasPrefix(raw, []byte("Received: ")) {
		t.Fatalf("message starts %q, want a Received field", raw[:min(len(raw), 40)])
	}
	end := 0
	for {
		i := bytes.Index(raw[end:], []byte("\r\n"))
		if i < 0 {
			t.Fatalf("Received field without an end: %q", raw[:min(len(raw), 200)])
		}
		end += i + 2
		if end == len(raw) || (raw[end] != ' ' && raw[end] != '\t') {
			return string(raw[:end]), raw[end:]
		}
	}
}

// plainHop is an SMTP server on loopback that offers neither CHUNKING nor
// BINARYMIME and takes no mail: it answers EHLO, NOOP, RSET and QUIT, and
// records every other command (refused with 502).
type plainHop struct {
	addr string
	mu   sync.Mutex
	cmds []string
}

func (h *plainHop) commands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.cmds...)
}

// startPlainHop runs a plainHop until the end of the test.
func startPlainHop(t *testing.T) *plainHop {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &plainHop{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var conns sync.Map
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(conn, true)
			wg.Go(func() { h.serve(conn) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	return h
}

func (h *plainHop) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	fmt.Fprint(conn, "220 plain.test ESMTP\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(line)), " ")
		switch verb {
		case "EHLO":
			fmt.Fprint(conn, "250-plain.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
		case "NOOP", "RSET":
			fmt.Fprint(conn, "250 2.0.0 Ok\r\n")
		case "QUIT":
			fmt.Fprint(conn, "221 2.0.0 Bye\r\n")
			return
		default:
			h.mu.Lock()
			h.cmds = append(h.cmds, strings.TrimSpace(line))
			h.mu.Unlock()
			fmt.Fprint(conn, "502 5.5.1 Not in this test\r\n")
		}
	}
}
