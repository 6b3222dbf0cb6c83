package delivery_test

// End-to-end tests of success DSNs (RFC 3461, issue 10): a whole gateway,
// real SMTP sinks on loopback, and the reports read back from the
// sender's Maildir with a MIME parser.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// dsnWorld is a gateway gw.test that relays for loopback, with a real SMTP
// sink for dsn.test (offers DSN, as mx.dsn.test) and one for plain.test
// (the same server behind a proxy that hides DSN, as mx.plain.test),
// local.test and the sender's client.test delivered into Maildirs.
type dsnWorld struct {
	gw         *gatewaytest.Gateway
	dsnSink    *smtptest.MemorySpool
	plainSink  *smtptest.MemorySpool
	localMail  string // Maildir root of local.test
	senderMail string // the Maildir of alice@client.test, where DSNs go
	t0         time.Time
}

func startDSNWorld(t *testing.T) *dsnWorld {
	t.Helper()
	w := &dsnWorld{dsnSink: &smtptest.MemorySpool{}, plainSink: &smtptest.MemorySpool{}, t0: time.Now().Truncate(time.Second)}
	relay := []netip.Prefix{smtptest.Loopback()}
	dsnAddr, _ := smtptest.StartServer(t, smtp.Options{Hostname: "mx.dsn.test", RelayNetworks: relay, Spool: w.dsnSink})
	plainAddr, _ := smtptest.StartServer(t, smtp.Options{Hostname: "mx.plain.test", RelayNetworks: relay, Spool: w.plainSink})
	plainAddr = hideExtension(t, plainAddr, "DSN")
	dns := resolvertest.Start(t, `
mx.dsn.test.   IN A 127.0.0.1
mx.plain.test. IN A 127.0.0.1
`)
	_, dsnPort, _ := net.SplitHostPort(dsnAddr)
	_, plainPort, _ := net.SplitHostPort(plainAddr)
	w.gw = gatewaytest.Start(t, fmt.Sprintf(`
hostname = "gw.test"
listener "mx" { address = "127.0.0.1:0" }
relay { networks = ["127.0.0.1/32"] }
delivery {
  resolver = %q
  retry    = ["1h"]
  route "dsn.test" {
    via = "mx.dsn.test:%s"
    tls = "none"
  }
  route "plain.test" {
    via = "mx.plain.test:%s"
    tls = "none"
  }
  route "local.test" {
    transport = "maildir"
    path      = "local"
  }
  route "client.test" {
    transport = "maildir"
    path      = "sender"
  }
}
`, dns.Addr(), dsnPort, plainPort))
	dir := filepath.Dir(w.gw.Path)
	w.localMail = filepath.Join(dir, "local")
	w.senderMail = filepath.Join(dir, "sender", "client.test", "alice")
	return w
}

// send submits one message from alice@client.test with RET=HDRS and
// ENVID=env1 to rcpts, each "address NOTIFY=…" as RCPT's argument after
// the path, and waits until the queue is empty (the message and the DSNs
// about it delivered). It returns the message's queue ID.
func (w *dsnWorld) send(t *testing.T, rcpts ...string) string {
	t.Helper()
	c, err := net.Dial("tcp", w.gw.Addr(t, "mx"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	step := func(code int, format string, args ...any) string {
		t.Helper()
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := tp.ReadResponse(code)
		if err != nil {
			t.Fatalf("after %q: %v", fmt.Sprintf(format, args...), err)
		}
		return msg
	}
	step(220, "")
	step(250, "EHLO client.test")
	step(250, "MAIL FROM:<alice@client.test> RET=HDRS ENVID=env1")
	for _, r := range rcpts {
		addr, params, _ := strings.Cut(r, " ")
		step(250, "RCPT TO:<%s> %s ORCPT=rfc822;%s", addr, params, addr)
	}
	step(354, "DATA")
	msg := step(250, "From: alice@client.test\r\nSubject: report\r\n\r\nHello.\r\n.")
	step(221, "QUIT")
	id, ok := strings.CutPrefix(msg, "2.0.0 Ok: queued as ")
	if !ok {
		t.Fatalf("DATA reply %q", msg)
	}
	if !gatewaytest.Eventually(10*time.Second, func() bool { return len(w.gw.Queued(t)) == 0 }) {
		t.Fatalf("the queue did not empty: %+v", w.gw.Queued(t))
	}
	return id
}

// reports returns the DSNs in the sender's Maildir, parsed, in no order.
func (w *dsnWorld) reports(t *testing.T) []engDSN {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(w.senderMail, "new", "*"))
	var out []engDSN
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, parseEngDSN(t, raw))
	}
	return out
}

// checkSuccessReport checks the header and the per-message fields of a
// success DSN about message id, and returns its recipient blocks with
// Last-Attempt-Date checked and left out.
func (w *dsnWorld) checkSuccessReport(t *testing.T, r engDSN, id string) []map[string]string {
	t.Helper()
	head := map[string]string{}
	for _, k := range []string{"From", "To", "Subject", "Auto-Submitted", "Return-Path"} {
		head[k] = r.Header.Get(k)
	}
	wantHead := map[string]string{
		"From": "Mail Delivery System <MAILER-DAEMON@gw.test>", "To": "<alice@client.test>",
		"Subject": "Successful Mail Delivery Report", "Auto-Submitted": "auto-replied", "Return-Path": "<>",
	}
	if diff := cmp.Diff(wantHead, head); diff != "" {
		t.Errorf("DSN header (-want +got):\n%s", diff)
	}
	if r.ReportType != "delivery-status" || r.Original != "text/rfc822-headers" {
		t.Errorf("report-type %q, part 3 %q; want delivery-status, text/rfc822-headers (RET=HDRS)", r.ReportType, r.Original)
	}
	w.checkDate(t, r.PerMessage, "Arrival-Date")
	wantMsg := map[string]string{
		"Reporting-Mta": "dns; gw.test", "X-Gateway-Queue-Id": id, "Original-Envelope-Id": "env1",
		"Received-From-Mta": "dns; client.test ([127.0.0.1])",
	}
	if diff := cmp.Diff(wantMsg, flatten(r.PerMessage)); diff != "" {
		t.Errorf("per-message fields (-want +got):\n%s", diff)
	}
	var blocks []map[string]string
	for _, b := range r.Rcpts {
		w.checkDate(t, b, "Last-Attempt-Date")
		blocks = append(blocks, flatten(b))
	}
	return blocks
}

// checkDate checks that field of h is a date since the world started, and
// removes it.
func (w *dsnWorld) checkDate(t *testing.T, h textproto.MIMEHeader, field string) {
	t.Helper()
	d, err := mail.ParseDate(h.Get(field))
	if err != nil || d.Before(w.t0) || d.After(time.Now()) {
		t.Errorf("%s %q (%v); want a date since %v", field, h.Get(field), err, w.t0)
	}
	h.Del(field)
}

// flatten is h with one value per field.
func flatten(h textproto.MIMEHeader) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = strings.Join(v, " | ")
	}
	return out
}

// rcptBlock is the per-recipient block the gateway writes for rcpt (its
// ORCPT the same address) delivered with action, by remote with
// diagnostic, or ("" and "") into a Maildir.
func rcptBlock(rcpt, action, diagnostic, remote string) map[string]string {
	b := map[string]string{
		"Original-Recipient": "rfc822; " + rcpt,
		"Final-Recipient":    "rfc822; " + rcpt,
		"Action":             action,
		"Status":             "2.0.0",
	}
	if remote != "" {
		b["Remote-Mta"] = "dns; " + remote
		b["Diagnostic-Code"] = "smtp; " + diagnostic
	}
	return b
}

// TestSuccessDSNToDSNCapableHop: NOTIFY=SUCCESS relayed to a next hop that
// offers DSN reaches it with ORCPT, ENVID and RET, and the gateway sends
// no report of its own.
func TestSuccessDSNToDSNCapableHop(t *testing.T) {
	w := startDSNWorld(t)
	w.send(t, "bob@dsn.test NOTIFY=SUCCESS,FAILURE")
	msgs := w.dsnSink.Messages()
	if len(msgs) != 1 {
		t.Fatalf("the DSN sink has %d messages, want 1", len(msgs))
	}
	env := msgs[0].Envelope
	want := []envelope.Recipient{{Address: envelope.Address{Local: "bob", Domain: "dsn.test"},
		Notify: envelope.NotifySuccess | envelope.NotifyFailure, ORCPT: "rfc822;bob@dsn.test"}}
	if diff := cmp.Diff(want, env.Recipients); diff != "" {
		t.Errorf("the sink's recipients (-want +got):\n%s", diff)
	}
	if env.EnvID != "env1" || env.Ret != envelope.RetHdrs {
		t.Errorf("the sink's ENVID %q, RET %q; want env1, HDRS", env.EnvID, env.Ret)
	}
	if n := w.gw.Engine().Stats().DSNs; n != 0 {
		t.Errorf("%d DSNs queued; want none", n)
	}
	if r := w.reports(t); len(r) != 0 {
		t.Errorf("%d reports in the sender's Maildir; want none", len(r))
	}
}

// TestSuccessDSNRelayed: to a next hop without DSN, one report with
// Action: relayed.
func TestSuccessDSNRelayed(t *testing.T) {
	w := startDSNWorld(t)
	id := w.send(t, "bob@plain.test NOTIFY=SUCCESS")
	msgs := w.plainSink.Messages()
	if len(msgs) != 1 || msgs[0].Envelope.Recipients[0].Notify != 0 || msgs[0].Envelope.EnvID != "" {
		t.Fatalf("the plain sink has %+v; want one message without DSN parameters", msgs)
	}
	reports := w.reports(t)
	if len(reports) != 1 {
		t.Fatalf("%d reports; want 1", len(reports))
	}
	got := w.checkSuccessReport(t, reports[0], id)
	want := []map[string]string{rcptBlock("bob@plain.test", "relayed", "250 2.0.0 Ok: queued as "+msgs[0].ID, "mx.plain.test")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recipient blocks (-want +got):\n%s", diff)
	}
}

// TestSuccessDSNDelivered: delivered into a Maildir, one report with
// Action: delivered.
func TestSuccessDSNDelivered(t *testing.T) {
	w := startDSNWorld(t)
	id := w.send(t, "bob@local.test NOTIFY=SUCCESS")
	files, _ := filepath.Glob(filepath.Join(w.localMail, "local.test", "bob", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("bob's Maildir has %d messages; want 1", len(files))
	}
	reports := w.reports(t)
	if len(reports) != 1 {
		t.Fatalf("%d reports; want 1", len(reports))
	}
	got := w.checkSuccessReport(t, reports[0], id)
	want := []map[string]string{rcptBlock("bob@local.test", "delivered", "", "")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("recipient blocks (-want +got):\n%s", diff)
	}
	if h := reports[0].Human; !strings.Contains(h, "\n<bob@local.test>: delivered (2.0.0).") || strings.Contains(h, w.localMail) {
		t.Errorf("human part does not say bob's mail was delivered, or names the Maildir's files:\n%s", h)
	}
}

// TestSuccessDSNOnePerMessage: recipients in three domains, delivered by
// three jobs, get one report listing those whose success is ours to
// report; the one relayed to a next hop with DSN is not in it.
func TestSuccessDSNOnePerMessage(t *testing.T) {
	w := startDSNWorld(t)
	id := w.send(t, "bob@local.test NOTIFY=SUCCESS", "carol@plain.test NOTIFY=SUCCESS,DELAY",
		"dave@dsn.test NOTIFY=SUCCESS", "erin@local.test NOTIFY=FAILURE")
	files, _ := filepath.Glob(filepath.Join(w.localMail, "local.test", "bob", "new", "*"))
	plain := w.plainSink.Messages()
	if len(files) != 1 || len(plain) != 1 || len(w.dsnSink.Messages()) != 1 {
		t.Fatalf("delivered: %d to bob, %d to plain.test, %d to dsn.test; want one each", len(files), len(plain), len(w.dsnSink.Messages()))
	}
	reports := w.reports(t)
	if len(reports) != 1 {
		t.Fatalf("%d reports; want 1", len(reports))
	}
	got := w.checkSuccessReport(t, reports[0], id)
	want := []map[string]string{
		rcptBlock("bob@local.test", "delivered", "", ""),
		rcptBlock("carol@plain.test", "relayed", "250 2.0.0 Ok: queued as "+plain[0].ID, "mx.plain.test"),
	}
	if diff := cmp.Diff(want, got, sortBlocks); diff != "" {
		t.Errorf("recipient blocks (-want +got):\n%s", diff)
	}
}

// hideExtension runs a proxy on loopback in front of the SMTP server at
// backend that leaves ext out of every EHLO reply: the real server, seen
// as a next hop without that extension. It returns the proxy's address;
// it stops at the end of the test.
func hideExtension(t *testing.T, backend, ext string) string {
	t.Helper()
	ln := listenLoopback(t)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				proxyFiltered(c, backend, ext)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return ln.Addr().String()
}

// proxyFiltered passes client's session on to backend, and the replies
// back with ext left out of the EHLO keywords, until either side closes.
func proxyFiltered(client net.Conn, backend, ext string) {
	defer client.Close()
	server, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(server, client)
		server.Close()
	}()
	br := bufio.NewReader(server)
	for {
		lines, err := readReply(br)
		if err != nil {
			break
		}
		if _, err := io.WriteString(client, joinReply(lines, ext)); err != nil {
			break
		}
	}
	client.Close()
	<-done
}

// readReply reads the lines of one reply, without their CRLF.
func readReply(br *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return lines, nil
		}
	}
}

// joinReply writes a reply's lines with CRLF, leaving out the lines that
// are the keyword ext and marking the last line as such.
func joinReply(lines []string, ext string) string {
	var kept []string
	for i, l := range lines {
		if len(l) < 4 {
			kept = append(kept, l)
			continue
		}
		if kw, _, _ := strings.Cut(l[4:], " "); i == 0 || !strings.EqualFold(kw, ext) {
			kept = append(kept, l)
		}
	}
	var b strings.Builder
	for i, l := range kept {
		if len(l) >= 4 {
			sep := "-"
			if i == len(kept)-1 {
				sep = " "
			}
			l = l[:3] + sep + l[4:]
		}
		b.WriteString(l + "\r\n")
	}
	return b.String()
}
