package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mailgate/gateway/core/inject"
	"github.com/mailgate/gateway/sdk/jsonmail"
)

// TestInjectAcceptsWebhookDocuments locks the promise that the gateway's
// injection endpoint takes the documents this transport posts. Both sides
// use jsonmail.Document, so the test checks what one type cannot: the
// golden document has no field the type lacks; with raw_base64 inject's
// message is the original, byte for byte; without it, the message inject
// composes from the fields parses back into the same document.
func TestInjectAcceptsWebhookDocuments(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "multipart.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc jsonmail.Document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("the golden document does not decode into jsonmail.Document: %v", err)
	}
	if len(doc.Headers) == 0 || len(doc.Attachments) == 0 || doc.RawBase64 == "" {
		t.Fatal("the golden document lacks headers, attachments or the raw message: the test would prove little")
	}

	msg, err := inject.Message(&doc, "mx.test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "multipart.eml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(msg, raw) {
		t.Errorf("inject's message differs from the original (%d bytes, want %d)", len(msg), len(raw))
	}

	composed := doc
	composed.RawBase64 = ""
	msg, err = inject.Message(&composed, "mx.test", time.Now())
	if err != nil {
		t.Fatalf("inject cannot compose the webhook document: %v", err)
	}
	d := delivery(t, "multipart.eml")
	d.Content = msg
	back := newDocument(d, 0, false)
	// The ID and envelope are the delivery's, and the header fields the
	// composed message's own (a new Message-ID, its MIME structure);
	// everything else comes back as it was sent.
	for _, x := range []*jsonmail.Document{&composed, back} {
		x.ID, x.Envelope, x.Headers, x.Notes = "", jsonmail.Envelope{}, nil, nil
	}
	if diff := cmp.Diff(composed, *back); diff != "" {
		t.Errorf("the composed message parses back into another document (-sent +back):\n%s", diff)
	}
}
