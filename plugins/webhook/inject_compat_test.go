package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mailgate/gateway/core/inject"
)

// TestInjectAcceptsWebhookDocuments locks the promise that the gateway's
// injection endpoint takes the documents this transport posts: the golden
// document decodes into inject.Document with every shared field intact, and
// the message it stands for is the original, byte for byte.
func TestInjectAcceptsWebhookDocuments(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "multipart.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ours Document
	var theirs inject.Document
	if err := json.Unmarshal(b, &ours); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &theirs); err != nil {
		t.Fatalf("inject cannot decode a webhook document: %v", err)
	}

	type shared struct {
		From, To                  string
		EnvFrom                   string
		EnvTo                     []string
		Headers                   [][2]string
		Subject, Date, Text, HTML string
		Attachments               [][3]string
		Raw                       string
	}
	var want, got shared
	want = shared{From: ours.From, To: ours.To, EnvFrom: ours.Envelope.From, EnvTo: ours.Envelope.To,
		Subject: ours.Subject, Date: ours.Date, Text: ours.Text, HTML: ours.HTML, Raw: ours.RawBase64}
	for _, h := range ours.Headers {
		want.Headers = append(want.Headers, [2]string{h.Name, h.Value})
	}
	for _, a := range ours.Attachments {
		want.Attachments = append(want.Attachments, [3]string{a.Filename, a.ContentType, a.ContentBase64})
	}
	got = shared{From: theirs.From, To: theirs.To, EnvFrom: theirs.Envelope.From, EnvTo: theirs.Envelope.To,
		Subject: theirs.Subject, Date: theirs.Date, Text: theirs.Text, HTML: theirs.HTML, Raw: theirs.RawBase64}
	for _, h := range theirs.Headers {
		got.Headers = append(got.Headers, [2]string{h.Name, h.Value})
	}
	for _, a := range theirs.Attachments {
		got.Attachments = append(got.Attachments, [3]string{a.Filename, a.ContentType, a.ContentBase64})
	}
	if len(want.Headers) == 0 || len(want.Attachments) == 0 || want.Raw == "" {
		t.Fatal("the golden document lacks headers, attachments or the raw message: the test would prove little")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields as inject reads them (-webhook +inject):\n%s", diff)
	}

	msg, err := theirs.Message("mx.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join("testdata", "multipart.eml"))
	if string(msg) != string(raw) {
		t.Errorf("inject's message differs from the original (%d bytes, want %d)", len(msg), len(raw))
	}
}
