// Package gatewaytest runs a whole gateway in-process for tests, built by
// core/gateway exactly as `gateway serve` builds it: a gateway.hcl written
// into a temporary folder (its listeners should say 127.0.0.1:0; Relocate
// moves those of a config meant to run as it stands), a DNS server on
// loopback unless the config names one, and a stop at the test's cleanup
// that waits for every part to end.
package gatewaytest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/resolver/resolvertest"
)

// Gateway is a running gateway and what a test reads of it.
type Gateway struct {
	*gateway.Gateway
	Config *config.Config
	Path   string // its gateway.hcl
	log    *Log
}

// WriteConfig writes hcl as gateway.hcl into a new temporary folder and
// returns its path. Relative paths in it (data_dir, scripts, plugins)
// mean that folder.
func WriteConfig(t testing.TB, hcl string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateway.hcl")
	if err := os.WriteFile(path, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Start writes hcl as WriteConfig does and runs the gateway it describes.
func Start(t testing.TB, hcl string) *Gateway {
	t.Helper()
	return StartFile(t, WriteConfig(t, hcl))
}

// StartFile loads the configuration at path and runs the gateway it
// describes until the test ends (see StartConfig).
func StartFile(t testing.TB, path string) *Gateway {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return StartConfig(t, cfg)
}

// StartConfig runs the gateway cfg describes until the test ends. A
// config without a resolver gets a DNS server on loopback that knows no
// names, so no test asks the machine's resolver. The gateway logs at
// debug level into Log.
func StartConfig(t testing.TB, cfg *config.Config) *Gateway {
	t.Helper()
	return StartOptions(t, cfg, gateway.Options{})
}

// StartOptions is StartConfig with opt's test seams (HTTPSPort); its Log,
// Version and Resolver are StartConfig's.
func StartOptions(t testing.TB, cfg *config.Config, opt gateway.Options) *Gateway {
	t.Helper()
	var dns []string
	if len(cfg.Delivery.Resolver) == 0 {
		dns = []string{resolvertest.Start(t, "").Addr()}
	}
	logs := &Log{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	opt.Log, opt.Version, opt.Resolver = log, "test", dns
	g, err := gateway.New(ctx, cfg, opt)
	if err != nil {
		cancel()
		t.Fatalf("gateway: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway stopped with: %v", err)
			}
		case <-time.After(cfg.ShutdownTimeout + 30*time.Second):
			t.Errorf("gateway did not stop")
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	return &Gateway{Gateway: g, Config: cfg, Path: cfg.File, log: logs}
}

// BuildPlugin builds the plugin main package in the folder pkg, a path
// such as "../plugins/lists" (relative paths start with ./ or ../ and are
// relative to the test's working directory, in the gateway's module),
// into a temporary folder as gateway-plugin-<name of the folder>, and
// returns the binary's path for a plugin block.
func BuildPlugin(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "gateway-plugin-"+filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Relocate moves a loaded configuration that is meant to run as it stands
// (an example's gateway.hcl) out of the way of the machine and the
// repository: every listener, the admin API and the inject endpoint onto
// 127.0.0.1:0, and data_dir into a temporary folder, together with every
// route path inside it (a Maildir under data/).
func Relocate(t testing.TB, cfg *config.Config) {
	t.Helper()
	for i := range cfg.Listeners {
		cfg.Listeners[i].Address = "127.0.0.1:0"
	}
	if cfg.Admin.Address != "" {
		cfg.Admin.Address = "127.0.0.1:0"
	}
	if cfg.Inject.Address != "" {
		cfg.Inject.Address = "127.0.0.1:0"
	}
	old, data := cfg.DataDir, t.TempDir()
	for i, rt := range cfg.Delivery.Routes {
		if rel, err := filepath.Rel(old, rt.Path); err == nil && rt.Path != "" && filepath.IsLocal(rel) {
			cfg.Delivery.Routes[i].Path = filepath.Join(data, rel)
		}
	}
	cfg.DataDir = data
}

// Addr returns the address of the listener called name ("admin" and
// "inject" included) as host:port; the test fails if there is none.
func (g *Gateway) Addr(t testing.TB, name string) string {
	t.Helper()
	a := g.Gateway.Addr(name)
	if a == nil {
		t.Fatalf("gateway has no listener %q", name)
	}
	return a.String()
}

// Log returns what the gateway logged so far.
func (g *Gateway) Log() *Log { return g.log }

// Log collects log lines while a test reads them.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Wait waits up to d for a line containing s to be logged.
func (l *Log) Wait(d time.Duration, s string) bool {
	return Eventually(d, func() bool { return strings.Contains(l.String(), s) })
}

// Message is a queued message as a test reads it.
type Message struct {
	ID       string
	Envelope envelope.Envelope
	Data     []byte // the header the server wrote, then the content
}

// Queued returns the messages in the gateway's queue, oldest first. A test
// that reads what was accepted gives the config a next hop that does not
// answer (see DeadRoute), so mail stays queued.
func (g *Gateway) Queued(t testing.TB) []Message {
	t.Helper()
	var msgs []*queue.Message
	if err := g.Spool().List(func(m *queue.Message) bool { msgs = append(msgs, m); return true }); err != nil {
		t.Fatal(err)
	}
	slices.SortStableFunc(msgs, func(a, b *queue.Message) int { return a.Created.Compare(b.Created) })
	out := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		rc, err := g.Spool().Body(m.ID)
		if errors.Is(err, queue.ErrNotFound) {
			continue // delivered since the listing
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Message{ID: m.ID, Envelope: m.Envelope, Data: data})
	}
	return out
}

// DeadRoute is a delivery block that sends every domain to a next hop on
// loopback where nothing listens and retries only after an hour: accepted
// mail stays in the queue for Queued to read.
const DeadRoute = `
delivery {
  route "*" { via = "127.0.0.1:9" }
  retry = ["1h"]
}
`

// Eventually polls cond every 10ms until it holds or d has passed, and
// reports whether it held.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}
