package gateway_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/sdk/jsonmail"
)

// TestInjectEndToEnd posts a JSON document to a running gateway's injection
// endpoint and finds the message delivered into the Maildir.
func TestInjectEndToEnd(t *testing.T) {
	g := gatewaytest.Start(t, `
hostname = "mx.test"
listener "mx" { address = "127.0.0.1:0" }
domains = ["example.test"]
inject {
  address = "127.0.0.1:0"
  token   = "an-injection-token-for-tests"
}
delivery {
  route "example.test" {
    transport = "maildir"
    path      = "mail"
  }
}
`)
	addr := g.Addr(t, "inject")
	mail := filepath.Join(filepath.Dir(g.Path), "mail")

	post := func(token string, doc jsonmail.Document) (int, map[string]any) {
		b, _ := json.Marshal(doc)
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/messages", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	doc := jsonmail.Document{
		Envelope: jsonmail.Envelope{From: "app@service.test", To: []string{"bob@example.test"}},
		Subject:  "From the API",
		Text:     "Injected over HTTP.",
	}
	if status, out := post("wrong-token-wrong-token", doc); status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d %v, want 401", status, out)
	}
	status, out := post("an-injection-token-for-tests", doc)
	if status != http.StatusAccepted || out["id"] == nil {
		t.Fatalf("inject: %d %v, want 202 with an id", status, out)
	}
	var files []string
	if !gatewaytest.Eventually(10*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(mail, "example.test", "bob", "new", "*"))
		return len(files) == 1
	}) {
		t.Fatalf("no message in the Maildir")
	}
	b, _ := os.ReadFile(files[0])
	for _, want := range []string{"Delivered-To: bob@example.test", "Received: from inject (", "Subject: From the API", "Injected over HTTP."} {
		if !strings.Contains(string(b), want) {
			t.Errorf("delivered message lacks %q:\n%s", want, b)
		}
	}
}
