package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/inject"
)

var injectListeningRE = regexp.MustCompile(`msg="inject listening" address=(\S+)`)

// logMatch waits for a line of the child's output matching re and returns
// its first submatch.
func (c *child) logMatch(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	if !eventually(10*time.Second, func() bool { m = re.FindStringSubmatch(c.stderr.String()); return m != nil }) {
		t.Fatalf("no log line matches %s; output:\n%s", re, c.stderr.String())
	}
	return m[1]
}

// TestInjectEndToEnd posts a JSON document to a running gateway's injection
// endpoint and finds the message delivered into the Maildir.
func TestInjectEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	data := t.TempDir()
	mail := filepath.Join(data, "mail")
	cfg := writeConfig(t, data, `
inject {
  address = "127.0.0.1:0"
  token   = "an-injection-token-for-tests"
}
delivery {
  route "example.test" {
    transport = "maildir"
    path      = "`+mail+`"
  }
}
`)
	gw := startGateway(t, "serve", "-config", cfg)
	addr := gw.logMatch(t, injectListeningRE)

	post := func(token string, doc inject.Document) (int, map[string]any) {
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
	doc := inject.Document{
		Envelope: inject.Envelope{From: "app@service.test", To: []string{"bob@example.test"}},
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
	if !eventually(10*time.Second, func() bool {
		files, _ = filepath.Glob(filepath.Join(mail, "example.test", "bob", "new", "*"))
		return len(files) == 1
	}) {
		t.Fatalf("no message in the Maildir; gateway log:\n%s", gw.stderr.String())
	}
	b, _ := os.ReadFile(files[0])
	for _, want := range []string{"Delivered-To: bob@example.test", "Received: from inject (", "Subject: From the API", "Injected over HTTP."} {
		if !strings.Contains(string(b), want) {
			t.Errorf("delivered message lacks %q:\n%s", want, b)
		}
	}
}
