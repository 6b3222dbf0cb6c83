package edgegateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
	"github.com/mailgate/gateway/core/smtp/smtptest"
)

// submissionMarker separates the two conversations of transcript.txt.
const submissionMarker = "# ---- submission:"

// zone is the DNS the gateway sees: the sender domains of the transcript
// exist, nowhere.test does not.
const zone = `
partner.test.     300 IN MX 10 mx.partner.test.
mx.partner.test.  300 IN A  192.0.2.25
example.test.     300 IN MX 10 mx.example.test.
mx.example.test.  300 IN A  127.0.0.1
`

// post is one request the ticketing system received.
type post struct {
	auth string
	doc  document
}

// document is the part of the webhook's JSON document the test checks
// (plugins/webhook/README.md has all of it).
type document struct {
	ID       string `json:"id"`
	Envelope struct {
		From     string   `json:"from"`
		To       []string `json:"to"`
		HELO     string   `json:"helo"`
		ClientIP string   `json:"client_ip"`
	} `json:"envelope"`
	Subject string `json:"subject"`
	From    string `json:"from"`
	Text    string `json:"text"`
}

// TestTranscript builds the aliases, lists and webhook plugins, runs this
// folder's gateway.hcl in a whole gateway (core/gateway, in-process, as
// `gateway serve` runs it) with free ports, a resolvertest DNS server, an
// httptest ticketing system and the example's aliases, virtual and lists
// files, replays transcript.txt on the mx and submission listeners, and
// checks the Maildirs and the POST.
func TestTranscript(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts plugins")
	}
	plugins := map[string]string{}
	for _, p := range []string{"aliases", "lists", "webhook"} {
		plugins[p] = gatewaytest.BuildPlugin(t, "../../plugins/"+p)
	}

	dns := resolvertest.Start(t, zone)
	posts := make(chan post, 10)
	tickets := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p post
		p.auth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/inbound-mail" || json.Unmarshal(b, &p.doc) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		posts <- p
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(tickets.Close)

	// The example's config with the test's ports, programs, DNS server and
	// ticketing system, and absolute paths for what it reads from this
	// folder. Written to a temporary folder: data_dir and the Maildirs
	// ("data", "data/mail") are relative to it.
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	abs := func(name string) string { return filepath.Join(here, name) }
	cfg := rewrite(t, "gateway.hcl",
		`address = "127.0.0.1:2532"`, `address = "127.0.0.1:0"`,
		`address       = "127.0.0.1:2533"`, `address       = "127.0.0.1:0"`,
		`resolver = "127.0.0.1:5353"`, `resolver = "`+dns.Addr()+`"`,
		`"../../scripts/relay.lua"`, `"`+abs("../../scripts/relay.lua")+`"`,
		`"bin/gateway-plugin-aliases"`, `"`+plugins["aliases"]+`"`,
		`"bin/gateway-plugin-lists"`, `"`+plugins["lists"]+`"`,
		`"bin/gateway-plugin-webhook"`, `"`+plugins["webhook"]+`"`,
		`aliases_file = "aliases"`, `aliases_file = "`+abs("aliases")+`"`,
		`virtual_file = "virtual"`, `virtual_file = "`+abs("virtual")+`"`,
		`lists_dir = "lists"`, `lists_dir = "`+abs("lists")+`"`,
		`"dkim/example.test.s1.pem"`, `"`+abs("dkim/example.test.s1.pem")+`"`,
		`"http://127.0.0.1:8080/inbound-mail"`, `"`+tickets.URL+`/inbound-mail"`)
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := gatewaytest.StartFile(t, path)

	script, err := os.ReadFile("transcript.txt")
	if err != nil {
		t.Fatal(err)
	}
	mx, submission, ok := strings.Cut(string(script), submissionMarker)
	if !ok {
		t.Fatalf("transcript.txt has no %q line", submissionMarker)
	}
	_, submission, _ = strings.Cut(submission, "\n") // the rest of the marker line
	smtptest.Run(t, gw.Addr(t, "mx"), mx)
	smtptest.Run(t, gw.Addr(t, "submission"), submission)

	// The help desk's message, POSTed to the ticketing system.
	select {
	case p := <-posts:
		if p.auth != "Bearer change-this-token" {
			t.Errorf("POST Authorization = %q, want the configured header", p.auth)
		}
		d := p.doc
		if d.ID == "" || d.Envelope.From != "carol@partner.test" ||
			!slices.Equal(d.Envelope.To, []string{"tickets@hooks.example.test"}) ||
			d.Envelope.HELO != "mta.partner.test" || d.Envelope.ClientIP != "127.0.0.1" {
			t.Errorf("POSTed envelope: id %q, %+v; want carol@partner.test to tickets@hooks.example.test, from mta.partner.test at 127.0.0.1", d.ID, d.Envelope)
		}
		if d.Subject != "Printer on fire" || d.From != "Carol <carol@partner.test>" ||
			d.Text != "The printer on the third floor is on fire again.\n" {
			t.Errorf("POSTed document: subject %q, from %q, text %q", d.Subject, d.From, d.Text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ticketing system got no POST")
	}

	// The alias and the list, in the Maildirs: alice and bob got the
	// order (info@) and the team message, dave the team message only.
	want := map[string][]string{
		"alice": {"Friday", "Order 1234"},
		"bob":   {"Friday", "Order 1234"},
		"dave":  {"Friday"},
	}
	got := map[string][]string{}
	msgs := map[string]string{} // user → the team message
	if !gatewaytest.Eventually(10*time.Second, func() bool {
		clear(got)
		for user := range want {
			files, _ := filepath.Glob(filepath.Join(dir, "data", "mail", "example.test", user, "new", "*"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				s := header(string(b), "Subject")
				got[user] = append(got[user], s)
				if s == "Friday" {
					msgs[user] = string(b)
				}
			}
			slices.Sort(got[user])
		}
		return equal(got, want)
	}) {
		t.Fatalf("the Maildirs have the subjects %v; want %v", got, want)
	}
	for user, m := range msgs {
		if id := header(m, "List-Id"); id != "Team <team.example.test>" {
			t.Errorf("%s's team message: List-Id %q, want %q", user, id, "Team <team.example.test>")
		}
	}
	// The refusals were for the reasons the transcript gives.
	for _, line := range []string{
		`msg="smtp: sender domain not found" listener=mx`,
		`hook=plugin.lists verdict=reject`,
		`hook=lua.relay verdict=reject`,
	} {
		if !strings.Contains(gw.Log().String(), line) {
			t.Errorf("the log has no %s", line)
		}
	}
}

// header returns the value of the first field called name of message m,
// "" if none.
func header(m, name string) string {
	head, _, _ := strings.Cut(strings.ReplaceAll(m, "\r\n", "\n"), "\n\n")
	for _, line := range strings.Split(head, "\n") {
		if n, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(n, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func equal(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// rewrite returns file's text with each old string replaced by its new
// one; every old string must occur exactly once, so the test notices when
// the example changes under it.
func rewrite(t *testing.T, file string, oldnew ...string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(oldnew); i += 2 {
		if n := strings.Count(s, oldnew[i]); n != 1 {
			t.Fatalf("%s has %q %d times, want once", file, oldnew[i], n)
		}
		s = strings.Replace(s, oldnew[i], oldnew[i+1], 1)
	}
	return s
}
