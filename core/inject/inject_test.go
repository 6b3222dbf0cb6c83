package inject_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
	"github.com/mailgate/gateway/sdk/jsonmail"
)

const token = "s3cret-token-for-tests"

// start runs a real SMTP server (no listener is used by the endpoint) with
// hooks that refuse blocked@ at rcpt for good and busy@ for now, and the
// endpoint in front of it.
func start(t *testing.T) (*httptest.Server, *smtptest.MemorySpool) {
	t.Helper()
	spool := &smtptest.MemorySpool{}
	hooks := hook.NewChain(nil, hook.Entry{Handler: hooktest.Func{HandlerName: "policy",
		F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
			if r.Stage != sdk.StageRcpt {
				return sdk.Decision{}, sdk.Effects{}, nil
			}
			switch r.Rcpt.Address.Local {
			case "blocked":
				return sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "No such user"), sdk.Effects{}, nil
			case "busy":
				return sdk.DeferDecision(450, sdk.EnhancedCode{4, 2, 0}, "Mailbox busy"), sdk.Effects{}, nil
			}
			return sdk.Decision{}, sdk.Effects{}, nil
		}}})
	_, srv := smtptest.StartServer(t, smtp.Options{
		LocalDomains:       []string{"example.test"},
		RelayAuthenticated: true,
		Hooks:              hooks,
		Spool:              spool,
	})
	h := inject.New(inject.Options{Server: srv, Token: token, Hostname: "mx.test",
		Now: func() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }})
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts, spool
}

func post(t *testing.T, ts *httptest.Server, auth string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		b, _ = json.Marshal(v)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/messages", bytes.NewReader(b))
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestInjectRaw(t *testing.T) {
	ts, spool := start(t)
	raw := "From: <app@service.test>\r\nTo: <bob@example.test>\r\nSubject: raw\r\n\r\nHello, raw.\r\n"
	status, out := post(t, ts, token, jsonmail.Document{
		Envelope:  jsonmail.Envelope{From: "app@service.test", To: []string{"bob@example.test"}},
		RawBase64: base64.StdEncoding.EncodeToString([]byte(raw)),
	})
	if status != http.StatusAccepted || out["id"] == "" || out["id"] == nil {
		t.Fatalf("status %d, body %v; want 202 with an id", status, out)
	}
	msgs := spool.Messages()
	if len(msgs) != 1 {
		t.Fatalf("spool has %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if got := string(m.Body); got != raw {
		t.Errorf("spooled content %q, want exactly %q", got, raw)
	}
	if m.Envelope.Sender.String() != "app@service.test" || m.Envelope.AuthUser != inject.AuthUser || m.Envelope.ClientIP != "127.0.0.1" {
		t.Errorf("envelope %+v: want sender app@service.test, auth user %q, client 127.0.0.1", m.Envelope, inject.AuthUser)
	}
	if !strings.HasPrefix(string(m.Header), "Received: from inject (") {
		t.Errorf("trace header %q", m.Header)
	}
}

// TestInjectComposed: a document without raw_base64 becomes a MIME message
// with text, HTML and an attachment that parses back to the same parts.
func TestInjectComposed(t *testing.T) {
	ts, spool := start(t)
	status, out := post(t, ts, token, jsonmail.Document{
		Envelope: jsonmail.Envelope{From: "app@service.test", To: []string{"bob@example.test", "carol@elsewhere.test"}},
		Subject:  "Grüße",
		Text:     "Hello\nworld",
		HTML:     "<p>Hello</p>",
		// As a webhook document lists them: its own fields win, MIME
		// structure fields are rewritten.
		Headers: []jsonmail.Header{{Name: "X-Ticket", Value: "42"}, {Name: "Date", Value: "Sun, 22 Nov 2026 10:00:00 +0000"},
			{Name: "Content-Type", Value: "text/plain"}},
		Attachments: []jsonmail.Attachment{{Filename: "a.txt", ContentType: "text/plain",
			ContentBase64: base64.StdEncoding.EncodeToString([]byte("attached"))}},
	})
	if status != http.StatusAccepted {
		t.Fatalf("status %d, body %v; want 202", status, out)
	}
	m := spool.Messages()[0]
	if got := len(m.Envelope.Recipients); got != 2 {
		t.Fatalf("%d recipients, want 2 (relay allowed: the API client is authenticated)", got)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subj, _ := dec.DecodeHeader(msg.Header.Get("Subject"))
	if subj != "Grüße" || msg.Header.Get("X-Ticket") != "42" || msg.Header.Get("To") != "bob@example.test, carol@elsewhere.test" ||
		msg.Header.Get("Date") != "Sun, 22 Nov 2026 10:00:00 +0000" || len(msg.Header["Date"]) != 1 || len(msg.Header["Content-Type"]) != 1 {
		t.Errorf("header: subject %q, X-Ticket %q, To %q, Date %q (want one of each)", subj, msg.Header.Get("X-Ticket"), msg.Header.Get("To"), msg.Header["Date"])
	}
	mt, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q, want multipart/mixed", mt)
	}
	var got []string
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, ps, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if ct == "multipart/alternative" {
			ar := multipart.NewReader(p, ps["boundary"])
			for {
				q, err := ar.NextPart()
				if err == io.EOF {
					break
				}
				b, _ := io.ReadAll(q) // multipart decodes quoted-printable
				qt, _, _ := mime.ParseMediaType(q.Header.Get("Content-Type"))
				got = append(got, qt+"="+strings.TrimRight(string(b), "\r\n"))
			}
			continue
		}
		b, _ := io.ReadAll(p)
		d, _ := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", ""))
		got = append(got, ct+"="+string(d))
	}
	want := []string{"text/plain=Hello\r\nworld", "text/html=<p>Hello</p>", "text/plain=attached"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parts (-want +got):\n%s", diff)
	}
}

// TestInjectDate: a document's date, RFC 3339 as the webhook writes it or
// RFC 5322, becomes the message's Date field; none is now.
func TestInjectDate(t *testing.T) {
	ts, spool := start(t)
	for i, tt := range []struct{ date, want string }{
		{"2026-11-22T10:00:00Z", "Sun, 22 Nov 2026 10:00:00 +0000"},
		{"2026-11-22T11:00:00+01:00", "Sun, 22 Nov 2026 11:00:00 +0100"},
		{"Sun, 22 Nov 2026 10:00:00 -0500", "Sun, 22 Nov 2026 10:00:00 -0500"},
		{"", "Sun, 22 Nov 2026 12:00:00 +0000"},
	} {
		status, out := post(t, ts, token, jsonmail.Document{
			Envelope: jsonmail.Envelope{From: "app@service.test", To: []string{"bob@example.test"}},
			Date:     tt.date,
			Text:     "x",
		})
		if status != http.StatusAccepted {
			t.Fatalf("date %q: status %d, body %v; want 202", tt.date, status, out)
		}
		msg, err := mail.ReadMessage(bytes.NewReader(spool.Messages()[i].Body))
		if err != nil {
			t.Fatal(err)
		}
		if got := msg.Header["Date"]; len(got) != 1 || got[0] != tt.want {
			t.Errorf("date %q: Date fields %q, want %q", tt.date, got, tt.want)
		}
	}
}

func TestInjectRefusals(t *testing.T) {
	ts, spool := start(t)
	doc := func(to ...string) jsonmail.Document {
		return jsonmail.Document{Envelope: jsonmail.Envelope{From: "app@service.test", To: to}, Text: "x"}
	}
	// A webhook document whose attachment was too big to carry cannot be
	// composed: refused, not queued without it.
	omitted := doc("bob@example.test")
	omitted.Attachments = []jsonmail.Attachment{{Filename: "big.pdf", ContentType: "application/pdf", Size: 1 << 30, Omitted: true}}
	badDate := doc("bob@example.test")
	badDate.Date = "yesterday"
	tests := []struct {
		name   string
		auth   string
		body   any
		status int
		want   map[string]any // fields of the answer that must match
	}{
		{"no token", "", doc("bob@example.test"), 401, map[string]any{"error": "missing or wrong bearer token"}},
		{"wrong token", "nope", doc("bob@example.test"), 401, map[string]any{"error": "missing or wrong bearer token"}},
		{"bad JSON", token, "{", 400, nil},
		{"no recipients", token, doc(), 400, map[string]any{"error": "envelope.to: at least one recipient is needed"}},
		{"omitted attachment", token, omitted, 400, map[string]any{"error": `inject: attachment "big.pdf" was omitted by the webhook (max_attachment_size): its content is not in the document; send raw_base64 instead`}},
		{"bad date", token, badDate, 400, map[string]any{"error": `inject: date "yesterday": want RFC 3339 or RFC 5322`}},
		{"rejected for good", token, doc("blocked@example.test"), 422,
			map[string]any{"code": float64(550), "enhanced": "5.1.1", "error": "No such user"}},
		{"refused for now", token, doc("busy@example.test"), 503,
			map[string]any{"code": float64(450), "enhanced": "4.2.0", "error": "Mailbox busy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out := post(t, ts, tt.auth, tt.body)
			if status != tt.status {
				t.Fatalf("status %d (%v), want %d", status, out, tt.status)
			}
			for k, v := range tt.want {
				if out[k] != v {
					t.Errorf("%s = %v, want %v (answer %v)", k, out[k], v, out)
				}
			}
		})
	}
	// One recipient refused, one accepted: queued for the one, and said.
	status, out := post(t, ts, token, doc("blocked@example.test", "bob@example.test"))
	rej, _ := out["rejected"].([]any)
	if status != 202 || len(rej) != 1 || rej[0].(map[string]any)["recipient"] != "blocked@example.test" {
		t.Errorf("partial: status %d, answer %v; want 202 with blocked@ rejected", status, out)
	}
	if n := len(spool.Messages()); n != 1 {
		t.Errorf("spool has %d messages, want only the partial one", n)
	}
}
