package scripts

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailgate/gateway/core/gateway/gatewaytest"
)

// testPassword is the password of every user in a test config's auth block
// ({{hash}} in the config text is its bcrypt hash).
const testPassword = "secret"

// gateway is a whole gateway (core/gateway, as `gateway serve` builds it)
// running a gateway.hcl whose lua blocks point at the scripts of this
// folder.
type gateway struct {
	*gatewaytest.Gateway
	Addr string // the first listener's address
}

// startGateway writes hcl to a gateway.hcl in a temporary folder and runs
// the gateway it describes. In hcl, {{scripts}} is the absolute path of
// this folder and {{hash}} the bcrypt hash of testPassword.
func startGateway(t testing.TB, hcl string) *gateway {
	t.Helper()
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hcl = strings.NewReplacer("{{scripts}}", here, "{{hash}}", string(hash)).Replace(hcl)
	g := gatewaytest.Start(t, hcl)
	return &gateway{Gateway: g, Addr: g.Addr(t, g.Config.Listeners[0].Name)}
}

// testLog logs to t at info level.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// testConfig returns a gateway.hcl for tests: domain example.test, no
// relay networks, alice and bob as users (password testPassword), AUTH
// allowed without TLS, every domain routed to a next hop that does not
// answer (accepted mail stays queued for the test to read), and then
// blocks (the lua blocks and a pipeline).
func testConfig(blocks string) string {
	return testConfigDomains(`["example.test"]`, blocks)
}

// testConfigDomains is testConfig with other domains (an HCL list).
func testConfigDomains(domains, blocks string) string {
	return testConfigDelivery(domains, gatewaytest.DeadRoute, blocks)
}

// testConfigDelivery is testConfigDomains with another delivery block.
func testConfigDelivery(domains, delivery, blocks string) string {
	return delivery + `
hostname = "mx.example.test"
domains  = ` + domains + `
listener "mx" {
  address       = "127.0.0.1:0"
  auth_insecure = true
}
relay {
  networks = []
}
auth {
  users = { alice = "{{hash}}", bob = "{{hash}}" }
}
` + blocks
}

// moreParams returns the HCL object params with the attributes more
// added at its end.
func moreParams(params string, more ...string) string {
	return strings.TrimSuffix(strings.TrimSpace(params), "}") + "  " + strings.Join(more, "\n  ") + "\n}"
}

// authPlain is the AUTH PLAIN command line for user with testPassword.
func authPlain(user string) string {
	return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+testPassword))
}

// recipients returns the envelope recipients of m as strings.
func recipients(m gatewaytest.Message) []string {
	var out []string
	for _, r := range m.Envelope.Recipients {
		out = append(out, r.Address.String())
	}
	return out
}

// headerValues returns the values of the header fields called name in the
// stored message (the server's header then the content's), unfolded and
// trimmed.
func headerValues(m gatewaytest.Message, name string) []string {
	head, _, _ := strings.Cut(string(m.Data), "\r\n\r\n")
	var out []string
	var cur *string
	for _, line := range strings.Split(head, "\r\n") {
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if cur != nil {
				*cur += " " + strings.TrimSpace(line)
			}
			continue
		}
		cur = nil
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(n, name) {
			out = append(out, strings.TrimSpace(v))
			cur = &out[len(out)-1]
		}
	}
	return out
}

// onlyMessage returns the one message g's queue holds.
func onlyMessage(t testing.TB, g *gateway) gatewaytest.Message {
	t.Helper()
	msgs := g.Queued(t)
	if len(msgs) != 1 {
		t.Fatalf("spool holds %d messages, want 1", len(msgs))
	}
	return msgs[0]
}

func wantStrings(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// sendMessage is the DATA part of a transcript: the message given as
// header lines and a body line, then the final reply expected.
func sendMessage(header []string, body string) string {
	var b strings.Builder
	b.WriteString("C: DATA\nS: 354 *\n")
	for _, h := range header {
		fmt.Fprintf(&b, "C: %s\n", h)
	}
	fmt.Fprintf(&b, "C:\nC: %s\nC: .\nS: 250 2.0.0 Ok: queued as *\n", body)
	return b.String()
}

// ctxTimeout is a context for direct calls.
func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}
