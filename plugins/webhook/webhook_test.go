package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/jsonmail"
	"github.com/mailgate/gateway/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// receiver is a webhook endpoint on loopback that records what it gets
// and answers with status (after delay).
type receiver struct {
	*httptest.Server
	status int
	delay  time.Duration

	mu       sync.Mutex
	bodies   [][]byte
	requests []*http.Request
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.requests = append(r.requests, req)
		delay := r.delay
		r.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-req.Context().Done():
			}
		}
		if r.status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(r.status)
		io.WriteString(w, "answer body")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) last() ([]byte, *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		return nil, nil
	}
	return r.bodies[len(r.bodies)-1], r.requests[len(r.requests)-1]
}

func configured(t *testing.T, m map[string]any) *Webhook {
	t.Helper()
	p := New()
	if err := p.Configure(context.Background(), m, nil); err != nil {
		t.Fatalf("Configure(%v) = %v", m, err)
	}
	return p
}

// delivery is the message in testdata/name for two recipients.
func delivery(t *testing.T, name string) *sdk.Delivery {
	t.Helper()
	content, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	rcpts := []sdk.Recipient{
		{Address: sdk.Address{Local: "bob", Domain: "example.org"}},
		{Address: sdk.Address{Local: "carol", Domain: "example.org"}},
	}
	return &sdk.Delivery{
		ID:         "01J0ABCDEF",
		Txn:        sdk.Txn{Sender: sdk.Address{Local: "alice", Domain: "example.net"}, Recipients: rcpts},
		Recipients: rcpts,
		Domain:     "example.org",
		Transport:  "webhook",
		Content:    content,
	}
}

// TestDocumentGolden posts testdata/multipart.eml (text, HTML, a PDF
// attachment and a Latin-1 part) and compares the JSON received, byte for
// byte, with testdata/multipart.json (indented there for reading).
func TestDocumentGolden(t *testing.T) {
	recv := newReceiver(t, http.StatusOK)
	p := configured(t, map[string]any{
		"url":     recv.URL + "/hooks/mail?x=1",
		"headers": map[string]string{"Authorization": "Bearer s3cret", "x-tenant": "acme"},
	})
	res, err := p.Deliver(context.Background(), delivery(t, "multipart.eml"))
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(recv.URL, "http://")
	want := sdk.DeliveryResult{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "webhook returned 200", RemoteMTA: host}
	if diff := cmp.Diff([]sdk.DeliveryResult{want, want}, res); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	body, req := recv.last()
	if req == nil {
		t.Fatal("the receiver got no request")
	}
	checks := []struct{ what, got, want string }{
		{"method", req.Method, "POST"},
		{"path", req.URL.RequestURI(), "/hooks/mail?x=1"},
		{"Content-Type", req.Header.Get("Content-Type"), "application/json"},
		{"Authorization", req.Header.Get("Authorization"), "Bearer s3cret"},
		{"X-Tenant", req.Header.Get("X-Tenant"), "acme"},
		{"User-Agent", req.Header.Get("User-Agent"), "gateway-plugin-webhook/" + version},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	golden := filepath.Join("testdata", "multipart.json")
	if *update {
		var b bytes.Buffer
		if err := json.Indent(&b, body, "", "  "); err != nil {
			t.Fatal(err)
		}
		b.WriteByte('\n')
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	indented, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	var wantBody bytes.Buffer
	if err := json.Compact(&wantBody, indented); err != nil { // Compact keeps "<" as it is
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantBody.String(), string(body)); diff != "" {
		t.Errorf("JSON received differs from %s (-want +got):\n%s", golden, diff)
	}

	// The golden file pinned as a Document too, so a reader sees the
	// fields that matter without decoding base64.
	var doc jsonmail.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	summary := jsonmail.Document{
		ID:       "01J0ABCDEF",
		Envelope: jsonmail.Envelope{From: "alice@example.net", To: []string{"bob@example.org", "carol@example.org"}, HELO: "client.example.net", ClientIP: "192.0.2.10"},
		Subject:  "Quarterly report ✓",
		From:     "Alice Müller <alice@example.net>",
		To:       "Bob <bob@example.org>, carol@example.org",
		Date:     "2026-01-06T10:59:58+01:00",
		Text:     "Hello Bob – see the report.\nThis line is long enough that it has to be wrapped with a soft line break.",
		HTML:     "<p>Hello <b>Bob</b> – see the report.</p>\n",
		Attachments: []jsonmail.Attachment{
			{Filename: "Q1 résumé.pdf", ContentType: `application/pdf; name="report.pdf"`, Size: 39,
				ContentBase64: "JVBERi0xLjQKJSBmYWtlIHBkZiBmb3IgdGhlIHRlc3QKJSVFT0YK"},
			{ContentType: "text/plain; charset=iso-8859-1", Size: 14, ContentBase64: "R3L832UgYXVzIEv2bG4="},
		},
	}
	got := doc
	got.Headers, got.RawBase64 = nil, ""
	if diff := cmp.Diff(summary, got); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
	if len(doc.Headers) != 8 || doc.Headers[0].Name != "Received" || doc.Headers[7].Name != "Content-Type" {
		t.Errorf("headers = %+v, want the message's 8 fields in order", doc.Headers)
	}
	if raw, _ := os.ReadFile(filepath.Join("testdata", "multipart.eml")); doc.RawBase64 == "" || string(mustBase64(t, doc.RawBase64)) != string(raw) {
		t.Error("raw_base64 is not the message")
	}
}

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	var doc struct{ B []byte }
	if err := json.Unmarshal([]byte(`{"B":"`+s+`"}`), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.B
}

func TestDocumentOptions(t *testing.T) {
	d := delivery(t, "multipart.eml")
	doc := newDocument(d, 20, false)
	if doc.RawBase64 != "" {
		t.Error("raw_base64 set with include_raw = false")
	}
	want := jsonmail.Attachment{Filename: "Q1 résumé.pdf", ContentType: `application/pdf; name="report.pdf"`, Size: 39, Omitted: true}
	if diff := cmp.Diff(want, doc.Attachments[0]); diff != "" {
		t.Errorf("attachment over max_attachment_size (-want +got):\n%s", diff)
	}
	if doc.Attachments[1].Omitted {
		t.Error("the 14-byte part is omitted with a limit of 20")
	}
}

func TestDocumentSimple(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    jsonmail.Document
	}{
		{"plain, no MIME, LF line ends", "Subject: hi\nFrom: a@example.net\n\nline 1\nline 2\n",
			jsonmail.Document{Subject: "hi", From: "a@example.net", Text: "line 1\nline 2\n"}},
		{"folded subject", "Subject: a\r\n  folded\r\n\tsubject\r\n\r\nbody",
			jsonmail.Document{Subject: "a folded subject", Text: "body"}},
		{"html only", "Content-Type: text/html; charset=UTF-8\r\n\r\n<p>x</p>",
			jsonmail.Document{HTML: "<p>x</p>"}},
		{"invalid UTF-8 in a UTF-8 part", "Content-Type: text/plain; charset=utf-8\r\n\r\n\xff\xfe",
			jsonmail.Document{
				Attachments: []jsonmail.Attachment{{ContentType: "text/plain; charset=utf-8", Size: 2, ContentBase64: "//4="}},
				Notes:       []string{`a text/plain part in charset "utf-8" is kept as an attachment`},
			}},
		{"Latin-1 text", "Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nK=F6ln",
			jsonmail.Document{
				Attachments: []jsonmail.Attachment{{ContentType: "text/plain; charset=ISO-8859-1", Size: 4, ContentBase64: "S/Zsbg=="}},
				Notes:       []string{`a text/plain part in charset "ISO-8859-1" is kept as an attachment`},
			}},
		{"ASCII in a Latin-1 part", "Content-Type: text/plain; charset=iso-8859-1\r\n\r\nplain",
			jsonmail.Document{Text: "plain"}},
		{"unknown charset in an encoded word", "Subject: =?x-unknown?q?abc?=\r\n\r\n",
			jsonmail.Document{Subject: "=?x-unknown?q?abc?="}},
		{"bad base64", "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!",
			jsonmail.Document{
				Attachments: []jsonmail.Attachment{{ContentType: "application/octet-stream", Size: 3, ContentBase64: "ISEh"}},
				Notes:       []string{"a application/octet-stream part did not decode (illegal base64 data at input byte 0); kept as it was"},
			}},
		{"multipart without end", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n",
			jsonmail.Document{Text: "text", Notes: []string{"a multipart/mixed part did not parse: unexpected EOF"}}},
		{"unparsable date", "Date: yesterday\r\n\r\n", jsonmail.Document{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &sdk.Delivery{ID: "x", Content: []byte(tt.content)}
			got := newDocument(d, 0, false)
			got.Headers = nil
			tt.want.ID = "x"
			tt.want.Envelope.To = []string{}
			if tt.want.Attachments == nil {
				tt.want.Attachments = []jsonmail.Attachment{}
			}
			if diff := cmp.Diff(tt.want, *got); diff != "" {
				t.Errorf("document (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		status int
		want   sdk.DeliveryResult
	}{
		{200, sdk.DeliveryResult{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "webhook returned 200"}},
		{204, sdk.DeliveryResult{Outcome: sdk.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "webhook returned 204"}},
		{302, sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: "webhook returned 302"}},
		{400, sdk.DeliveryResult{Outcome: sdk.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 0, 0}, Text: "webhook returned 400"}},
		{404, sdk.DeliveryResult{Outcome: sdk.Permanent, Code: 550, Enhanced: sdk.EnhancedCode{5, 0, 0}, Text: "webhook returned 404"}},
		{408, sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: "webhook returned 408"}},
		{429, sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: "webhook returned 429"}},
		{500, sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: "webhook returned 500"}},
		{503, sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1}, Text: "webhook returned 503"}},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			recv := newReceiver(t, tt.status)
			p := configured(t, map[string]any{"url": recv.URL})
			res, err := p.Deliver(context.Background(), delivery(t, "multipart.eml"))
			if err != nil {
				t.Fatal(err)
			}
			tt.want.RemoteMTA = strings.TrimPrefix(recv.URL, "http://")
			if diff := cmp.Diff([]sdk.DeliveryResult{tt.want, tt.want}, res); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
			if n := len(recv.bodies); n != 1 {
				t.Errorf("the receiver got %d requests, want 1 (no redirect followed)", n)
			}
		})
	}
}

func TestFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		recv := newReceiver(t, http.StatusOK)
		recv.delay = 5 * time.Second
		p := configured(t, map[string]any{"url": recv.URL, "timeout": "100ms"})
		start := time.Now()
		res, err := p.Deliver(context.Background(), delivery(t, "multipart.eml"))
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("Deliver took %v with a 100ms timeout", el)
		}
		want := sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1},
			Text: "webhook timed out after 100ms", RemoteMTA: strings.TrimPrefix(recv.URL, "http://")}
		if diff := cmp.Diff([]sdk.DeliveryResult{want, want}, res); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		recv := newReceiver(t, http.StatusOK)
		url := recv.URL
		recv.Close()
		p := configured(t, map[string]any{"url": url + "/path?token=s3cret"})
		res, err := p.Deliver(context.Background(), delivery(t, "multipart.eml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 2 || res[0].Outcome != sdk.Temporary || res[0].Code != 451 || res[0].Enhanced != (sdk.EnhancedCode{4, 4, 1}) {
			t.Fatalf("results = %+v, want two 451 4.4.1 temporary failures", res)
		}
		if !strings.HasPrefix(res[0].Text, "webhook unreachable: ") || strings.Contains(res[0].Text, "s3cret") {
			t.Errorf("text = %q, want the cause without the URL", res[0].Text)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		recv := newReceiver(t, http.StatusOK)
		recv.delay = 5 * time.Second
		p := configured(t, map[string]any{"url": recv.URL})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := p.Deliver(ctx, delivery(t, "multipart.eml"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Deliver with an ending ctx = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		if _, err := New().Deliver(context.Background(), delivery(t, "multipart.eml")); !errors.Is(err, errNotConfigured) {
			t.Errorf("Deliver before Configure = %v, want errNotConfigured", err)
		}
	})
	t.Run("other transport", func(t *testing.T) {
		p := configured(t, map[string]any{"url": "http://127.0.0.1:1"})
		d := delivery(t, "multipart.eml")
		d.Transport = "smtp"
		if _, err := p.Deliver(context.Background(), d); !errors.Is(err, sdk.ErrNotHandled) {
			t.Errorf("Deliver for transport smtp = %v, want sdk.ErrNotHandled", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  map[string]any
		want []string
	}{
		{"no url", map[string]any{}, []string{"config: url: required setting missing"}},
		{"ftp url", map[string]any{"url": "ftp://example.test/"}, []string{`config: url: want an http:// or https:// URL, got "ftp://example.test/"`}},
		{"relative url", map[string]any{"url": "/hook"}, []string{`config: url: want an http:// or https:// URL, got "/hook"`}},
		{"bad header", map[string]any{"url": "https://h.example.test/", "headers": map[string]string{"Bad Name": "x", "X-Ok": "a\r\nInjected: 1"}},
			[]string{`config: headers: "Bad Name" is not a header field name`, "config: headers: the value of X-Ok has a line break"}},
		{"bad timeout", map[string]any{"url": "https://h.example.test/", "timeout": "0s"},
			[]string{`config: timeout: want a positive duration such as "10s", got "0s"`}},
		{"bad size", map[string]any{"url": "https://h.example.test/", "max_attachment_size": 1.5},
			[]string{"config: max_attachment_size: want a whole number of bytes, 0 or more, got 1.5"}},
		{"negative size", map[string]any{"url": "https://h.example.test/", "max_attachment_size": -1.0},
			[]string{"config: max_attachment_size: want a whole number of bytes, 0 or more, got -1"}},
		{"unknown", map[string]any{"url": "https://h.example.test/", "method": "PUT"},
			[]string{"config: method: unknown setting"}},
	}
	// Through the plugin boundary, as the host configures: the sdk refuses
	// unknown settings, wrong types and missing required settings (sorted
	// by field) before parseConfig runs; the rest are the plugin's checks.
	r := sdktest.Start(t, New())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Configure(t.Context(), tt.cfg, nil)
			var errs sdk.ConfigErrors
			if !errors.As(err, &errs) {
				t.Fatalf("Configure = %v, want sdk.ConfigErrors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConformance(t *testing.T) {
	recv := newReceiver(t, http.StatusNoContent)
	sdktest.Conformance(t, New(), map[string]any{
		"url":     recv.URL,
		"headers": map[string]string{"Authorization": "Bearer x"},
		"timeout": "5s",
	})
}

// TestThroughHost delivers across the plugin boundary.
func TestThroughHost(t *testing.T) {
	ctx := t.Context()
	recv := newReceiver(t, http.StatusServiceUnavailable)
	r := sdktest.Start(t, New())
	if err := r.Configure(ctx, map[string]any{"url": recv.URL, "max_attachment_size": 0.0}, sdktest.NewHost()); err != nil {
		t.Fatal(err)
	}
	info, err := r.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(info.Transports, []string{"webhook"}) || len(info.Stages) != 0 {
		t.Errorf("Info: transports %v, stages %v; want [webhook] and none", info.Transports, info.Stages)
	}
	res, err := r.Deliver(ctx, delivery(t, "multipart.eml"))
	if err != nil {
		t.Fatal(err)
	}
	want := sdk.DeliveryResult{Outcome: sdk.Temporary, Code: 451, Enhanced: sdk.EnhancedCode{4, 4, 1},
		Text: "webhook returned 503", RemoteMTA: strings.TrimPrefix(recv.URL, "http://")}
	if diff := cmp.Diff([]sdk.DeliveryResult{want, want}, res); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}

func FuzzDocument(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "multipart.eml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		doc := newDocument(&sdk.Delivery{Content: content}, 1<<20, true)
		if _, err := json.Marshal(doc); err != nil {
			t.Errorf("document does not marshal: %v", err)
		}
	})
}

func TestSchemaGolden(t *testing.T) {
	got, err := json.MarshalIndent(New().Info().Schema, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "schema.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s is stale; go test -update rewrites it (-file +schema):\n%s", path, diff)
	}
}

// TestDocumentClientBelowGatewayFields: the client's HELO and address
// come from the gateway's Received field even when the gateway put
// Authentication-Results, a DKIM-Signature or an ARC set above it (the
// edge example lost them once its authentication block was on).
func TestDocumentClientBelowGatewayFields(t *testing.T) {
	content := "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a@example.net\r\n" +
		"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=example.org; s=arc; b=AAAA\r\n" +
		"Received: from client.example.net ([192.0.2.10])\r\n\tby mx.example.org with ESMTP id 01J0; Tue, 6 Jan 2026 10:00:00 +0000\r\n" +
		"Received: from elsewhere.example ([198.51.100.1]) by client.example.net; Tue, 6 Jan 2026 09:59:00 +0000\r\n" +
		"Subject: hi\r\n\r\nbody\r\n"
	doc := newDocument(&sdk.Delivery{ID: "x", Content: []byte(content)}, 1<<20, false)
	if doc.Envelope.HELO != "client.example.net" || doc.Envelope.ClientIP != "192.0.2.10" {
		t.Errorf("envelope HELO %q, client %q; want client.example.net, 192.0.2.10", doc.Envelope.HELO, doc.Envelope.ClientIP)
	}
}
