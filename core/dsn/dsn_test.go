package dsn

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current results")

var (
	testNow     = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	testArrival = time.Date(2026, 3, 9, 10, 0, 0, 0, time.UTC)
	testRetry   = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
)

const testOriginal = "Received: from client.example.com by mx.example.org\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: lunch\r\n" +
	"Message-ID: <lunch.1@example.com>\r\n" +
	"\r\n" +
	"Shall we have lunch on Friday?\r\n"

const testOriginalHeader = "Received: from client.example.com by mx.example.org\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: lunch\r\n" +
	"Message-ID: <lunch.1@example.com>\r\n"

func rcpt(local, domain string) envelope.Recipient {
	return envelope.Recipient{Address: envelope.Address{Local: local, Domain: domain}}
}

// testDSN is a bounce for bob@example.net with fixed Now, Message-ID and
// boundary.
func testDSN(ret envelope.Ret) *Report {
	return &Report{
		ReportingMTA: "mx.example.org",
		Envelope: &envelope.Envelope{
			Sender:     envelope.Address{Local: "alice", Domain: "example.com"},
			Recipients: []envelope.Recipient{rcpt("bob", "example.net")},
			Ret:        ret,
			ClientIP:   "192.0.2.7",
			ClientHELO: "client.example.com",
			Received:   testArrival,
		},
		QueueID: "4F2A9C1B",
		Reports: []RecipientReport{{
			Recipient:   rcpt("bob", "example.net"),
			Action:      ActionFailed,
			Status:      sdk.EnhancedCode{5, 1, 1},
			Diagnostic:  "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
			RemoteMTA:   "mx1.example.net",
			LastAttempt: testNow.Add(-time.Minute),
		}},
		Original:  strings.NewReader(testOriginal),
		Now:       testNow,
		MessageID: "<20260314150926.DSN1@mx.example.org>",
		Boundary:  "4F2A9C1B.1773500966/mx.example.org",
	}
}

// parsedPart is one MIME part of a built DSN.
type parsedPart struct {
	Header textproto.MIMEHeader
	Body   string
}

// parsedDSN is a built DSN read back with the standard library.
type parsedDSN struct {
	Header mail.Header
	Params map[string]string // of the top-level Content-Type
	Parts  []parsedPart
}

// build builds d and parses the result back.
func build(t *testing.T, d *Report) (parsedDSN, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := d.Build(&buf); err != nil {
		t.Fatalf("Build: %v", err)
	}
	raw := buf.Bytes()
	checkLines(t, raw)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v\n%s", err, raw)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		t.Fatalf("Content-Type %q: media type %q, %v; want multipart/report", msg.Header.Get("Content-Type"), mt, err)
	}
	p := parsedDSN{Header: msg.Header, Params: params}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextRawPart: %v", err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("reading part: %v", err)
		}
		p.Parts = append(p.Parts, parsedPart{Header: part.Header, Body: string(body)})
	}
	return p, raw
}

// checkLines checks that every line of raw ends in CRLF, has no bare CR and
// fits in 998 bytes.
func checkLines(t *testing.T, raw []byte) {
	t.Helper()
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Errorf("DSN does not end in CRLF")
	}
	for i, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) || bytes.Count(line, []byte("\r")) != 1 {
			t.Errorf("line %d %q: not a CRLF line", i+1, line)
		}
		if len(line) > 1000 {
			t.Errorf("line %d is %d bytes long", i+1, len(line))
		}
	}
}

// statusFields parses a delivery-status body: the per-message block, then
// one block per recipient.
func statusFields(t *testing.T, body string) (textproto.MIMEHeader, []textproto.MIMEHeader) {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(strings.NewReader(body)))
	var blocks []textproto.MIMEHeader
	for {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			blocks = append(blocks, h)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading delivery-status: %v\n%s", err, body)
		}
	}
	if len(blocks) == 0 {
		t.Fatalf("empty delivery-status:\n%s", body)
	}
	return blocks[0], blocks[1:]
}

// fields flattens h to the first value of each field.
func fields(h textproto.MIMEHeader) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		m[k] = v[0]
		if len(v) > 1 {
			m[k] = strings.Join(v, " | ")
		}
	}
	return m
}

func TestDSNFailedFull(t *testing.T) {
	for _, ret := range []envelope.Ret{envelope.RetFull, envelope.RetUnset} {
		t.Run("RET="+string(ret), func(t *testing.T) {
			d := testDSN(ret)
			p, _ := build(t, d)

			gotHeader := map[string]string{}
			for _, k := range []string{"From", "To", "Subject", "Date", "Message-Id", "Auto-Submitted", "Mime-Version", "Content-Transfer-Encoding"} {
				gotHeader[k] = p.Header.Get(k)
			}
			wantHeader := map[string]string{
				"From":                      "Mail Delivery System <MAILER-DAEMON@mx.example.org>",
				"To":                        "<alice@example.com>",
				"Subject":                   "Undelivered Mail Returned to Sender",
				"Date":                      "Sat, 14 Mar 2026 15:09:26 +0000",
				"Message-Id":                "<20260314150926.DSN1@mx.example.org>",
				"Auto-Submitted":            "auto-replied",
				"Mime-Version":              "1.0",
				"Content-Transfer-Encoding": "",
			}
			if diff := cmp.Diff(wantHeader, gotHeader); diff != "" {
				t.Errorf("header fields (-want +got):\n%s", diff)
			}
			if got, want := p.Params["report-type"], "delivery-status"; got != want {
				t.Errorf("report-type = %q, want %q", got, want)
			}
			if got, want := p.Params["boundary"], d.Boundary; got != want {
				t.Errorf("boundary = %q, want %q", got, want)
			}
			if got, err := p.Header.Date(); err != nil || !got.Equal(testNow) {
				t.Errorf("Date() = %v, %v; want %v", got, err, testNow)
			}

			if len(p.Parts) != 3 {
				t.Fatalf("got %d parts, want 3", len(p.Parts))
			}
			wantTypes := []string{"text/plain; charset=us-ascii", "message/delivery-status", "message/rfc822"}
			for i, want := range wantTypes {
				if got := p.Parts[i].Header.Get("Content-Type"); got != want {
					t.Errorf("part %d Content-Type = %q, want %q", i+1, got, want)
				}
				if got := p.Parts[i].Header.Get("Content-Transfer-Encoding"); got != "" {
					t.Errorf("part %d Content-Transfer-Encoding = %q, want none", i+1, got)
				}
			}

			human := p.Parts[0].Body
			for _, want := range []string{
				"This is the mail system at host mx.example.org.",
				"4F2A9C1B",
				"<bob@example.net>: delivery failed (5.1.1).",
				"host mx1.example.net said: 550 5.1.1 <bob@example.net>: Recipient",
				"The original message is attached.",
			} {
				if !strings.Contains(human, want) {
					t.Errorf("human part lacks %q:\n%s", want, human)
				}
			}

			msgFields, rcpts := statusFields(t, p.Parts[1].Body)
			wantMsg := map[string]string{
				"Reporting-Mta":      "dns; mx.example.org",
				"X-Gateway-Queue-Id": "4F2A9C1B",
				"Received-From-Mta":  "dns; client.example.com ([192.0.2.7])",
				"Arrival-Date":       "Mon, 09 Mar 2026 10:00:00 +0000",
			}
			if diff := cmp.Diff(wantMsg, fields(msgFields)); diff != "" {
				t.Errorf("per-message fields (-want +got):\n%s", diff)
			}
			wantRcpts := []map[string]string{{
				"Final-Recipient":   "rfc822; bob@example.net",
				"Action":            "failed",
				"Status":            "5.1.1",
				"Remote-Mta":        "dns; mx1.example.net",
				"Diagnostic-Code":   "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
				"Last-Attempt-Date": "Sat, 14 Mar 2026 15:08:26 +0000",
			}}
			var gotRcpts []map[string]string
			for _, h := range rcpts {
				gotRcpts = append(gotRcpts, fields(h))
			}
			if diff := cmp.Diff(wantRcpts, gotRcpts); diff != "" {
				t.Errorf("per-recipient fields (-want +got):\n%s", diff)
			}

			if got := p.Parts[2].Body; got != testOriginal {
				t.Errorf("returned original:\n%q\nwant\n%q", got, testOriginal)
			}
			orig, err := mail.ReadMessage(strings.NewReader(p.Parts[2].Body))
			if err != nil {
				t.Fatalf("returned original does not parse: %v", err)
			}
			if got, want := orig.Header.Get("Message-Id"), "<lunch.1@example.com>"; got != want {
				t.Errorf("returned original Message-ID = %q, want %q", got, want)
			}
		})
	}
}

func TestDSNHeadersOnly(t *testing.T) {
	tests := []struct {
		name   string
		ret    envelope.Ret
		action Action
	}{
		{"failed RET=HDRS", envelope.RetHdrs, ActionFailed},
		{"delayed RET unset", envelope.RetUnset, ActionDelayed},
		{"delayed RET=HDRS", envelope.RetHdrs, ActionDelayed},
		{"delivered RET unset", envelope.RetUnset, ActionDelivered},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDSN(tc.ret)
			d.Reports[0].Action = tc.action
			d.Reports[0].Status = sdk.EnhancedCode{}
			p, _ := build(t, d)
			if len(p.Parts) != 3 {
				t.Fatalf("got %d parts, want 3", len(p.Parts))
			}
			if got, want := p.Parts[2].Header.Get("Content-Type"), "text/rfc822-headers"; got != want {
				t.Errorf("part 3 Content-Type = %q, want %q", got, want)
			}
			if got := p.Parts[2].Body; got != testOriginalHeader {
				t.Errorf("part 3 body:\n%q\nwant\n%q", got, testOriginalHeader)
			}
			if !strings.Contains(p.Parts[0].Body, "The header section of the original message is attached.") {
				t.Errorf("human part does not say the headers are attached:\n%s", p.Parts[0].Body)
			}
			// The headers parse as a header section.
			h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(p.Parts[2].Body + "\r\n"))).ReadMIMEHeader()
			if err != nil || h.Get("Subject") != "lunch" {
				t.Errorf("part 3 as a header section: Subject %q, %v; want lunch", h.Get("Subject"), err)
			}
			_, rcpts := statusFields(t, p.Parts[1].Body)
			if got, want := rcpts[0].Get("Status"), reportStatus(RecipientReport{Action: tc.action}).String(); got != want {
				t.Errorf("default Status = %q, want %q", got, want)
			}
		})
	}
}

func TestDSNDelayedFullOnRequest(t *testing.T) {
	d := testDSN(envelope.RetFull)
	d.Reports[0].Action = ActionDelayed
	p, _ := build(t, d)
	if got, want := p.Header.Get("Subject"), "Delayed Mail (still being retried)"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if got, want := p.Parts[2].Header.Get("Content-Type"), "message/rfc822"; got != want {
		t.Errorf("part 3 Content-Type = %q, want %q", got, want)
	}
}

func TestDSNTwoRecipients(t *testing.T) {
	d := testDSN(envelope.RetUnset)
	d.Reports = append(d.Reports, RecipientReport{
		Recipient:      rcpt("carol", "example.org"),
		Action:         ActionDelayed,
		Status:         sdk.EnhancedCode{4, 4, 1},
		Diagnostic:     "connect to mx.example.org[198.51.100.1]:25: Connection timed out",
		LastAttempt:    testNow.Add(-2 * time.Minute),
		WillRetryUntil: testRetry,
	})
	d.Reports[0].WillRetryUntil = testRetry // ignored: not delayed
	p, _ := build(t, d)

	if got, want := p.Header.Get("Subject"), "Undelivered Mail Returned to Sender"; got != want {
		t.Errorf("Subject = %q, want %q (failure wins over delay)", got, want)
	}
	_, rcpts := statusFields(t, p.Parts[1].Body)
	var got []map[string]string
	for _, h := range rcpts {
		got = append(got, fields(h))
	}
	want := []map[string]string{{
		"Final-Recipient":   "rfc822; bob@example.net",
		"Action":            "failed",
		"Status":            "5.1.1",
		"Remote-Mta":        "dns; mx1.example.net",
		"Diagnostic-Code":   "smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown in virtual mailbox table",
		"Last-Attempt-Date": "Sat, 14 Mar 2026 15:08:26 +0000",
	}, {
		"Final-Recipient":   "rfc822; carol@example.org",
		"Action":            "delayed",
		"Status":            "4.4.1",
		"Diagnostic-Code":   "smtp; connect to mx.example.org[198.51.100.1]:25: Connection timed out",
		"Last-Attempt-Date": "Sat, 14 Mar 2026 15:07:26 +0000",
		"Will-Retry-Until":  "Sat, 14 Mar 2026 10:00:00 +0000",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("per-recipient fields (-want +got):\n%s", diff)
	}
	human := p.Parts[0].Body
	for _, s := range []string{
		"<bob@example.net>: delivery failed (5.1.1).",
		"<carol@example.org>: delivery delayed (4.4.1); the mail system will keep",
		"the remote server said: connect to mx.example.org[198.51.100.1]:25:",
	} {
		if !strings.Contains(human, s) {
			t.Errorf("human part lacks %q:\n%s", s, human)
		}
	}
	if got, want := p.Parts[2].Header.Get("Content-Type"), "message/rfc822"; got != want {
		t.Errorf("part 3 Content-Type = %q, want %q (a failure returns the message)", got, want)
	}
}

// TestDSNSuccess: a success report's human part says when the message
// was relayed to a server that sends no success reports (RFC 3461
// §6.2.3), and not otherwise.
func TestDSNSuccess(t *testing.T) {
	relayedText := "Your message was delivered or relayed to the recipients listed below. Where\r\n" +
		"it was relayed, no further success report will come, but a server further on\r\n" +
		"may still report a failure.\r\n"
	deliveredText := "Your message was delivered to the recipients listed below.\r\n"
	tests := []struct {
		name    string
		actions []Action
		intro   string
		lines   []string
	}{
		{"delivered", []Action{ActionDelivered}, deliveredText, []string{"<bob@example.net>: delivered (2.0.0)."}},
		{"expanded", []Action{ActionExpanded}, deliveredText, []string{"<bob@example.net>: delivered to an alias or list, which expanded it (2.0.0)."}},
		{"relayed and delivered", []Action{ActionDelivered, ActionRelayed}, relayedText, []string{
			"<bob@example.net>: delivered (2.0.0).",
			"<carol@example.net>: relayed to a server that sends no delivery reports\r\n(2.0.0).",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDSN(envelope.RetUnset)
			d.Reports = nil
			for i, a := range tt.actions {
				d.Reports = append(d.Reports, RecipientReport{Recipient: rcpt([]string{"bob", "carol"}[i], "example.net"), Action: a})
			}
			p, _ := build(t, d)
			if got, want := p.Header.Get("Subject"), "Successful Mail Delivery Report"; got != want {
				t.Errorf("Subject = %q, want %q", got, want)
			}
			human := p.Parts[0].Body
			if !strings.Contains(human, "\r\n\r\n"+tt.intro+"\r\n") {
				t.Errorf("human part lacks the intro %q:\n%s", tt.intro, human)
			}
			if tt.intro == deliveredText && strings.Contains(human, "relayed") {
				t.Errorf("human part speaks of relaying:\n%s", human)
			}
			for _, l := range tt.lines {
				if !strings.Contains(human, "\r\n"+l+"\r\n") {
					t.Errorf("human part lacks %q:\n%s", l, human)
				}
			}
			_, rcpts := statusFields(t, p.Parts[1].Body)
			for i, r := range rcpts {
				if got := r.Get("Action"); got != string(tt.actions[i]) {
					t.Errorf("recipient %d Action %q, want %s", i, got, tt.actions[i])
				}
			}
		})
	}
}

func TestDSNOriginalRecipientAndEnvID(t *testing.T) {
	tests := []struct {
		name, orcpt, envid string
		wantOrig, wantEnv  string
	}{
		{"plain", "rfc822;bob@example.net", "QQ314159", "rfc822; bob@example.net", "QQ314159"},
		{"xtext decoded", "rfc822;bob+2Btag@example.net", "QQ+2B314159+3D", "rfc822; bob+tag@example.net", "QQ+314159="},
		{"lower-case hex", "RFC822;b+2bob@example.net", "a+2bb", "RFC822; b+ob@example.net", "a+b"},
		{"bad xtext kept", "rfc822;bob+2@example.net", "id+ZZ", "rfc822; bob+2@example.net", "id+ZZ"},
		{"control char kept encoded", "rfc822;bob+0D+0A@example.net", "x+0Ay", "rfc822; bob+0D+0A@example.net", "x+0Ay"},
		{"no type kept", "bob@example.net", "", "bob@example.net", ""},
		{"no ORCPT", "", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDSN(envelope.RetHdrs)
			d.Envelope.EnvID = tc.envid
			d.Reports[0].Recipient.ORCPT = tc.orcpt
			p, _ := build(t, d)
			msg, rcpts := statusFields(t, p.Parts[1].Body)
			if got := msg.Get("Original-Envelope-Id"); got != tc.wantEnv {
				t.Errorf("Original-Envelope-Id = %q, want %q", got, tc.wantEnv)
			}
			if _, ok := msg["Original-Envelope-Id"]; ok != (tc.wantEnv != "") {
				t.Errorf("Original-Envelope-Id present = %v, want %v", ok, tc.wantEnv != "")
			}
			if got := rcpts[0].Get("Original-Recipient"); got != tc.wantOrig {
				t.Errorf("Original-Recipient = %q, want %q", got, tc.wantOrig)
			}
			if got, want := rcpts[0].Get("Final-Recipient"), "rfc822; bob@example.net"; got != want {
				t.Errorf("Final-Recipient = %q, want %q", got, want)
			}
		})
	}
}

func TestWants(t *testing.T) {
	const (
		never   = envelope.NotifyNever
		success = envelope.NotifySuccess
		failure = envelope.NotifyFailure
		delay   = envelope.NotifyDelay
	)
	actions := []Action{ActionFailed, ActionDelayed, ActionDelivered, ActionRelayed, ActionExpanded, Action("bogus")}
	tests := []struct {
		name   string
		notify envelope.Notify
		want   []bool // per actions
	}{
		{"unset", 0, []bool{true, true, false, false, false, false}},
		{"NEVER", never, []bool{false, false, false, false, false, false}},
		{"SUCCESS", success, []bool{false, false, true, true, true, false}},
		{"FAILURE", failure, []bool{true, false, false, false, false, false}},
		{"DELAY", delay, []bool{false, true, false, false, false, false}},
		{"SUCCESS,FAILURE", success | failure, []bool{true, false, true, true, true, false}},
		{"FAILURE,DELAY", failure | delay, []bool{true, true, false, false, false, false}},
		{"SUCCESS,FAILURE,DELAY", success | failure | delay, []bool{true, true, true, true, true, false}},
		{"NEVER with others", never | failure, []bool{false, false, false, false, false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, a := range actions {
				if got := Wants(tc.notify, a); got != tc.want[i] {
					t.Errorf("Wants(%s, %s) = %v, want %v", tc.name, a, got, tc.want[i])
				}
			}
		})
	}
}

func TestStatusFromReply(t *testing.T) {
	tests := []struct {
		code     int
		enhanced sdk.EnhancedCode
		want     sdk.EnhancedCode
	}{
		{550, sdk.EnhancedCode{5, 1, 1}, sdk.EnhancedCode{5, 1, 1}},
		{550, sdk.EnhancedCode{}, sdk.EnhancedCode{5, 0, 0}},
		{554, sdk.EnhancedCode{}, sdk.EnhancedCode{5, 0, 0}},
		{421, sdk.EnhancedCode{}, sdk.EnhancedCode{4, 0, 0}},
		{451, sdk.EnhancedCode{4, 7, 1}, sdk.EnhancedCode{4, 7, 1}},
		{250, sdk.EnhancedCode{}, sdk.EnhancedCode{2, 0, 0}},
		{250, sdk.EnhancedCode{2, 6, 0}, sdk.EnhancedCode{2, 6, 0}},
		// The reply code decides permanence: a 4xx never becomes a bounce.
		{450, sdk.EnhancedCode{5, 1, 1}, sdk.EnhancedCode{4, 1, 1}},
		{550, sdk.EnhancedCode{4, 2, 2}, sdk.EnhancedCode{5, 2, 2}},
		{0, sdk.EnhancedCode{4, 4, 1}, sdk.EnhancedCode{4, 4, 1}},
		{0, sdk.EnhancedCode{}, sdk.EnhancedCode{}},
		{354, sdk.EnhancedCode{}, sdk.EnhancedCode{}},
		{999, sdk.EnhancedCode{}, sdk.EnhancedCode{}},
	}
	for _, tc := range tests {
		if got := StatusFromReply(tc.code, tc.enhanced); got != tc.want {
			t.Errorf("StatusFromReply(%d, %s) = %s, want %s", tc.code, tc.enhanced, got, tc.want)
		}
	}
}

func TestDSNLargeOriginal(t *testing.T) {
	body := strings.Repeat("All work and no play makes Jack a dull boy.\r\n", 2000) // 90 KB
	tests := []struct {
		name     string
		max      int64
		original string
		wantType string
		wantBody string
		wantText string
	}{
		{"under the limit", 1 << 20, testOriginalHeader + "\r\n" + body, "message/rfc822", testOriginalHeader + "\r\n" + body, "The original message is attached."},
		{"exactly the limit", int64(len(testOriginal)), testOriginal, "message/rfc822", testOriginal, "The original message is attached."},
		{"one byte over", int64(len(testOriginal)) - 1, testOriginal, "text/rfc822-headers", testOriginalHeader, "too large to return in full"},
		{"over the limit", 4096, testOriginalHeader + "\r\n" + body, "text/rfc822-headers", testOriginalHeader, "too large to return in full"},
		{"negative: headers always", -1, testOriginal, "text/rfc822-headers", testOriginalHeader, "The header section of the original message is attached."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDSN(envelope.RetFull)
			d.MaxOriginal = tc.max
			d.Original = strings.NewReader(tc.original)
			p, _ := build(t, d)
			if got := p.Parts[2].Header.Get("Content-Type"); got != tc.wantType {
				t.Errorf("part 3 Content-Type = %q, want %q", got, tc.wantType)
			}
			if got := p.Parts[2].Body; got != tc.wantBody {
				t.Errorf("part 3 body is %d bytes, want %d: %.200q", len(got), len(tc.wantBody), got)
			}
			if !strings.Contains(p.Parts[0].Body, tc.wantText) {
				t.Errorf("human part lacks %q:\n%s", tc.wantText, p.Parts[0].Body)
			}
		})
	}

	t.Run("default limit", func(t *testing.T) {
		big := testOriginalHeader + "\r\n" + strings.Repeat(body, DefaultMaxOriginal/len(body)+1)
		d := testDSN(envelope.RetFull)
		d.Original = strings.NewReader(big)
		p, _ := build(t, d)
		if got, want := p.Parts[2].Header.Get("Content-Type"), "text/rfc822-headers"; got != want {
			t.Errorf("part 3 Content-Type = %q, want %q", got, want)
		}
		if got := p.Parts[2].Body; got != testOriginalHeader {
			t.Errorf("part 3 body = %.200q, want the header section", got)
		}
	})
}

func TestDSNOriginalEdgeCases(t *testing.T) {
	tests := []struct {
		name       string
		ret        envelope.Ret
		original   string
		wantBody   string
		wantEncode string
	}{
		{"bare LF normalised", envelope.RetFull, "Subject: x\nFrom: a@b\n\nline\nline2\n", "Subject: x\r\nFrom: a@b\r\n\r\nline\r\nline2\r\n", ""},
		{"headers without a body", envelope.RetHdrs, "Subject: x\r\nFrom: a@b\r\n", "Subject: x\r\nFrom: a@b\r\n", ""},
		{"headers without a final break", envelope.RetHdrs, "Subject: x\r\nFrom: a@b", "Subject: x\r\nFrom: a@b\r\n", ""},
		{"headers with bare LF", envelope.RetHdrs, "Subject: x\nFrom: a@b\n\nbody\n", "Subject: x\r\nFrom: a@b\r\n", ""},
		{"8-bit body", envelope.RetFull, "Subject: x\r\n\r\nGrüße\r\n", "Subject: x\r\n\r\nGrüße\r\n", "8bit"},
		{"8-bit body, headers only", envelope.RetHdrs, "Subject: x\r\n\r\nGrüße\r\n", "Subject: x\r\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDSN(tc.ret)
			d.Original = strings.NewReader(tc.original)
			p, _ := build(t, d)
			if got := p.Parts[2].Body; got != tc.wantBody {
				t.Errorf("part 3 body = %q, want %q", got, tc.wantBody)
			}
			if got := p.Parts[2].Header.Get("Content-Transfer-Encoding"); got != tc.wantEncode {
				t.Errorf("part 3 Content-Transfer-Encoding = %q, want %q", got, tc.wantEncode)
			}
			if got := p.Header.Get("Content-Transfer-Encoding"); got != tc.wantEncode {
				t.Errorf("top-level Content-Transfer-Encoding = %q, want %q", got, tc.wantEncode)
			}
		})
	}

	t.Run("binary", func(t *testing.T) {
		// A BINARYMIME original comes back byte for byte in a report that
		// is 7-bit: message/global in base64 (issue 10).
		d := testDSN(envelope.RetFull)
		d.Envelope.Body = envelope.BodyBinaryMIME
		orig := "Subject: x\r\n\r\n\x00bare\rCR\nLF\xff" + strings.Repeat("z", 2000) + "\r\n"
		d.Original = strings.NewReader(orig)
		var raw bytes.Buffer
		if err := d.Build(&raw); err != nil {
			t.Fatal(err)
		}
		if !isASCII(raw.String()) {
			t.Errorf("the report is not 7-bit")
		}
		d.Original = strings.NewReader(orig)
		p, _ := build(t, d)
		h := p.Parts[2].Header
		if got := h.Get("Content-Type") + " " + h.Get("Content-Transfer-Encoding"); got != "message/global base64" {
			t.Errorf("part 3 is %q, want message/global base64", got)
		}
		got, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(p.Parts[2].Body, "\r\n", ""))
		if err != nil || string(got) != orig {
			t.Errorf("part 3 decodes to %q (%v), want the original byte for byte", got, err)
		}
		if top := p.Header.Get("Content-Transfer-Encoding"); top != "" {
			t.Errorf("top-level Content-Transfer-Encoding = %q, want none", top)
		}
	})

	t.Run("no original", func(t *testing.T) {
		d := testDSN(envelope.RetFull)
		d.Original = nil
		p, _ := build(t, d)
		if len(p.Parts) != 2 {
			t.Errorf("got %d parts, want 2", len(p.Parts))
		}
		if strings.Contains(p.Parts[0].Body, "attached") {
			t.Errorf("human part mentions an attachment:\n%s", p.Parts[0].Body)
		}
	})
}

func TestDSNUTF8(t *testing.T) {
	d := testDSN(envelope.RetFull)
	d.Envelope.SMTPUTF8 = true
	d.Reports[0].Recipient = rcpt("jösé", "exämple.net")
	d.Original = strings.NewReader("Subject: Grüße\r\n\r\nHallo\r\n")
	p, _ := build(t, d)
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	check("top-level Content-Transfer-Encoding", p.Header.Get("Content-Transfer-Encoding"), "8bit")
	check("part 1 Content-Type", p.Parts[0].Header.Get("Content-Type"), "text/plain; charset=utf-8")
	check("part 1 Content-Transfer-Encoding", p.Parts[0].Header.Get("Content-Transfer-Encoding"), "8bit")
	check("part 2 Content-Type", p.Parts[1].Header.Get("Content-Type"), "message/global-delivery-status")
	check("part 2 Content-Transfer-Encoding", p.Parts[1].Header.Get("Content-Transfer-Encoding"), "8bit")
	check("part 3 Content-Type", p.Parts[2].Header.Get("Content-Type"), "message/global")
	check("part 3 Content-Transfer-Encoding", p.Parts[2].Header.Get("Content-Transfer-Encoding"), "8bit")
	_, rcpts := statusFields(t, p.Parts[1].Body)
	check("Final-Recipient", rcpts[0].Get("Final-Recipient"), "utf-8; jösé@exämple.net")

	d = testDSN(envelope.RetHdrs)
	d.Original = strings.NewReader("Subject: Grüße\r\n\r\nHallo\r\n")
	p, _ = build(t, d)
	check("headers-only part 3 Content-Type", p.Parts[2].Header.Get("Content-Type"), "message/global-headers")
}

func TestDSNSanitisesAndFolds(t *testing.T) {
	d := testDSN(envelope.RetHdrs)
	long := "550-5.7.1 This message was rejected because it looks like spam according to our filters; " +
		"see https://postmaster.example.net/spam-policy for details and contact postmaster@example.net if you believe this is wrong"
	d.Reports[0].Diagnostic = "550 5.1.1 No such user\r\nInjected: yes"
	d.Reports[0].RemoteMTA = "mx1.example.net\r\nX-Evil: 1"
	d.Reports = append(d.Reports, RecipientReport{Recipient: rcpt("carol", "example.net"), Action: ActionFailed, Diagnostic: long})
	d.Envelope.ClientHELO = "evil\r\nX-Evil: 2"
	p, raw := build(t, d)
	if bytes.Contains(raw, []byte("\r\nInjected:")) || bytes.Contains(raw, []byte("\r\nX-Evil:")) {
		t.Errorf("a control character broke out of its field:\n%s", raw)
	}
	msg, rcpts := statusFields(t, p.Parts[1].Body)
	if got, want := msg.Get("Received-From-Mta"), ""; got != want {
		t.Errorf("Received-From-MTA = %q, want %q", got, want)
	}
	if got, want := rcpts[0].Get("Diagnostic-Code"), "smtp; 550 5.1.1 No such user  Injected: yes"; got != want {
		t.Errorf("Diagnostic-Code = %q, want %q", got, want)
	}
	if got, want := rcpts[1].Get("Diagnostic-Code"), "smtp; "+long; got != want {
		t.Errorf("folded Diagnostic-Code unfolds to %q, want %q", got, want)
	}
	if got, want := rcpts[1].Get("Status"), "5.0.0"; got != want {
		t.Errorf("default failed Status = %q, want %q", got, want)
	}
	for i, line := range strings.Split(p.Parts[1].Body, "\r\n") {
		if len(line) > maxLine {
			t.Errorf("delivery-status line %d is %d long: %q", i+1, len(line), line)
		}
	}
	for i, line := range strings.Split(p.Parts[0].Body, "\r\n") {
		if len(line) > 76 {
			t.Errorf("human line %d is %d long: %q", i+1, len(line), line)
		}
	}
}

func TestDSNDefaults(t *testing.T) {
	d := testDSN(envelope.RetFull)
	d.MessageID = ""
	d.Boundary = ""
	d.From = ""
	p1, _ := build(t, d)
	d.Original = strings.NewReader(testOriginal)
	p2, _ := build(t, d)
	id1, id2 := p1.Header.Get("Message-Id"), p2.Header.Get("Message-Id")
	if !strings.HasPrefix(id1, "<20260314150926.") || !strings.HasSuffix(id1, "@mx.example.org>") {
		t.Errorf("generated Message-ID = %q, want <20260314150926.…@mx.example.org>", id1)
	}
	if id1 == id2 {
		t.Errorf("two generated Message-IDs are both %q", id1)
	}
	if p1.Params["boundary"] == "" || p1.Params["boundary"] == p2.Params["boundary"] {
		t.Errorf("generated boundaries %q and %q: want distinct, nonempty", p1.Params["boundary"], p2.Params["boundary"])
	}

	d.From = "postmaster@example.org"
	d.To = envelope.Address{Local: "sender", Domain: "example.com"}
	d.Original = nil
	p3, _ := build(t, d)
	if got, want := p3.Header.Get("From"), "Mail Delivery System <postmaster@example.org>"; got != want {
		t.Errorf("From = %q, want %q", got, want)
	}
	if got, want := p3.Header.Get("To"), "<sender@example.com>"; got != want {
		t.Errorf("To = %q, want %q (To wins over the envelope sender)", got, want)
	}

	// A success report without an envelope.
	d = &Report{
		ReportingMTA: "mx.example.org",
		To:           envelope.Address{Local: "alice", Domain: "example.com"},
		Reports:      []RecipientReport{{Recipient: rcpt("bob", "example.net"), Action: ActionDelivered}},
		Now:          testNow,
	}
	p4, _ := build(t, d)
	if got, want := p4.Header.Get("Subject"), "Successful Mail Delivery Report"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	msg, rcpts := statusFields(t, p4.Parts[1].Body)
	if diff := cmp.Diff(map[string]string{"Reporting-Mta": "dns; mx.example.org"}, fields(msg)); diff != "" {
		t.Errorf("per-message fields without an envelope (-want +got):\n%s", diff)
	}
	if got, want := rcpts[0].Get("Status"), "2.0.0"; got != want {
		t.Errorf("Status = %q, want %q", got, want)
	}
}

func TestDSNBuildErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(d *Report)
		want   error
	}{
		{"null sender", func(d *Report) { d.Envelope.Sender = envelope.Address{} }, ErrNullSender},
		{"no reporting MTA", func(d *Report) { d.ReportingMTA = " \r\n" }, ErrInvalid},
		{"no reports", func(d *Report) { d.Reports = nil }, ErrInvalid},
		{"unknown action", func(d *Report) { d.Reports[0].Action = "bounced" }, ErrInvalid},
		{"bad status class", func(d *Report) { d.Reports[0].Status = sdk.EnhancedCode{3, 0, 0} }, ErrInvalid},
		{"null recipient", func(d *Report) { d.Reports[0].Recipient = envelope.Recipient{} }, ErrInvalid},
		{"bad boundary", func(d *Report) { d.Boundary = "no spaces at the end " }, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDSN(envelope.RetFull)
			tc.change(d)
			var buf bytes.Buffer
			err := d.Build(&buf)
			if err == nil {
				t.Fatalf("Build succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Build error %v, want one wrapping %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "dsn: ") {
				t.Errorf("error %q lacks the dsn: prefix", err)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestDSNOriginalReadError(t *testing.T) {
	d := testDSN(envelope.RetFull)
	d.Original = failingReader{}
	var buf bytes.Buffer
	err := d.Build(&buf)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Build error = %v, want the read error", err)
	}
}

// TestDSNGolden pins the exact bytes of a bounce. Run with -update to
// rewrite testdata/dsn_failed.golden.
func TestDSNGolden(t *testing.T) {
	d := testDSN(envelope.RetFull)
	d.Envelope.EnvID = "QQ314159"
	d.Reports[0].Recipient.ORCPT = "rfc822;bob@example.net"
	var buf bytes.Buffer
	if err := d.Build(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "dsn_failed.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("DSN differs from %s (-want +got):\n%s", golden, diff)
	}
}

// TestSendEnvelope: the envelope a built report is queued with.
func TestSendEnvelope(t *testing.T) {
	alice := envelope.Address{Local: "alice", Domain: "example.com"}
	tests := []struct {
		name     string
		edit     func(d *Report)
		to       envelope.Address
		body     envelope.Body
		smtputf8 bool
	}{
		{name: "ASCII", edit: func(d *Report) {}, to: alice},
		{name: "to the postmaster", edit: func(d *Report) { d.To = envelope.Address{Local: "postmaster", Domain: "example.org"} },
			to: envelope.Address{Local: "postmaster", Domain: "example.org"}},
		{name: "8-bit original", edit: func(d *Report) { d.Original = strings.NewReader("Subject: x\r\n\r\nGrüße\r\n") },
			to: alice, body: envelope.Body8BitMIME},
		{name: "binary original", edit: func(d *Report) {
			d.Envelope.Body = envelope.BodyBinaryMIME
			d.Original = strings.NewReader("Subject: x\r\n\r\n\x00\xff\r\n")
		}, to: alice},
		{name: "UTF-8 original", edit: func(d *Report) {
			d.Envelope.SMTPUTF8 = true
			d.Original = strings.NewReader("Subject: Grüße\r\n\r\nHallo\r\n")
		}, to: alice, body: envelope.Body8BitMIME, smtputf8: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := testDSN(envelope.RetFull)
			tt.edit(d)
			var b bytes.Buffer
			if err := d.Build(&b); err != nil {
				t.Fatal(err)
			}
			got := d.SendEnvelope(b.Bytes())
			want := &envelope.Envelope{
				Recipients: []envelope.Recipient{{Address: tt.to, Notify: envelope.NotifyNever}},
				Body:       tt.body,
				SMTPUTF8:   tt.smtputf8,
				Received:   testNow,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("SendEnvelope (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReceivedFrom: the dns type names a domain; an address literal or
// the client's free text gives no field (issue 10: "dns; [127.0.0.1]").
func TestReceivedFrom(t *testing.T) {
	tests := []struct{ helo, ip, want string }{
		{"client.example.com", "192.0.2.7", "dns; client.example.com ([192.0.2.7])"},
		{"client.example.com", "", "dns; client.example.com"},
		{"[192.0.2.7]", "192.0.2.7", ""},
		{"", "127.0.0.1", ""},
		{"evil) by trusted.example (gateway", "192.0.2.7", ""},
	}
	for _, tt := range tests {
		if got := receivedFrom(envelope.Envelope{ClientHELO: tt.helo, ClientIP: tt.ip}); got != tt.want {
			t.Errorf("receivedFrom(%q, %q) = %q, want %q", tt.helo, tt.ip, got, tt.want)
		}
	}
}

// TestDSNLocalDiagnostic: a failure this gateway decided is not presented
// as a reply of a remote server (issue 10: "the remote server said" about
// our own 5.6.3).
func TestDSNLocalDiagnostic(t *testing.T) {
	d := testDSN(envelope.RetHdrs)
	d.Reports[0].RemoteMTA, d.Reports[0].Local = "", true
	d.Reports[0].Status = sdk.EnhancedCode{5, 6, 3}
	d.Reports[0].Diagnostic = "554 5.6.3 mx1.example.net does not take BINARYMIME"
	p, _ := build(t, d)
	_, rcpts := statusFields(t, p.Parts[1].Body)
	if got, want := fields(rcpts[0])["Diagnostic-Code"], "X-Gateway; 554 5.6.3 mx1.example.net does not take BINARYMIME"; got != want {
		t.Errorf("Diagnostic-Code = %q, want %q", got, want)
	}
	human := p.Parts[0].Body
	if !strings.Contains(human, "the mail system here said: 554 5.6.3") || strings.Contains(human, "remote server") {
		t.Errorf("human part does not call the failure ours:\n%s", human)
	}
}
