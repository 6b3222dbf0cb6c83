package pluginhost_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/pluginhost"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// The plugin benchmarks. Run them with
//
//	go test ./core/pluginhost -run '^$' -bench . -count 5
//
// and compare the medians: BenchmarkPluginRcptCall is the cost of one call
// across the process boundary; BenchmarkAcceptWithPlugin against
// BenchmarkAcceptNoPlugin is what one plugin rcpt hook costs a server
// accepting mail.

// Load of the accept benchmarks, the same as scripts/bench_test.go's, so
// the figures compare with the Lua ones.
const (
	benchConns    = 8    // concurrent client sessions
	benchBodySize = 2048 // bytes per message
)

// BenchmarkPluginRcptCall is the cost of one rcpt call of the test plugin
// (a recipient it has no opinion on): Plugin.Handle directly, no chain,
// no SMTP, so it is the conversion, the gRPC round trip over the local
// socket and the plugin's dispatch.
func BenchmarkPluginRcptCall(b *testing.B) {
	p := startBench(b)
	req := rcptRequest("user42")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, _, err := p.Handle(ctx, req)
		if err != nil || d.Verdict != sdk.Continue {
			b.Fatalf("Handle = %v, %v; want continue", d, err)
		}
	}
}

// BenchmarkAcceptNoPlugin is the baseline of BenchmarkAcceptWithPlugin:
// the same server and load without a hook chain.
func BenchmarkAcceptNoPlugin(b *testing.B) { benchAccept(b, nil) }

// BenchmarkAcceptWithPlugin measures a real server (discarding spool)
// with the test plugin as its one hook, at rcpt only, driven by benchConns
// sessions sending 2 KB messages with pipelining. It reports msgs/s;
// compare with BenchmarkAcceptNoPlugin.
func BenchmarkAcceptWithPlugin(b *testing.B) {
	p := startBench(b)
	benchAccept(b, hook.NewChain(nil, hook.Entry{
		Handler: p,
		Timeout: 2 * time.Second,
		OnError: hook.OnErrorDefer,
		Stages:  []sdk.Stage{sdk.StageRcpt},
	}))
}

// startBench starts the test plugin for a benchmark and closes it at the
// end.
func startBench(b *testing.B) *pluginhost.Plugin {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, pluginhost.Options{
		Name:   "bench",
		Path:   benchPlugin(b, "testplugin"),
		Config: map[string]any{"greeting": "hello"},
		Host:   pluginhost.NewHost(nil, &memKV{}, nil),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchPlugin is plugin (pluginhost_test.go) for benchmarks: it builds
// testdata/<name> once per test binary, into the same folder.
func benchPlugin(b *testing.B, name string) string {
	b.Helper()
	dir, err := buildDir()
	if err != nil {
		b.Fatal(err)
	}
	v, _ := builds.LoadOrStore(name, &build{})
	bl := v.(*build)
	bl.once.Do(func() {
		bl.path = filepath.Join(dir, "gateway-plugin-"+name)
		cmd := exec.Command("go", "build", "-o", bl.path, "./testdata/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			bl.err = fmt.Errorf("go build ./testdata/%s: %v\n%s", name, err, out)
		}
	})
	if bl.err != nil {
		b.Fatal(bl.err)
	}
	return bl.path
}

func benchAccept(b *testing.B, hooks hook.Dispatcher) {
	spool := &benchSpool{}
	opt := smtp.Options{
		Hostname:     "mx.example.test",
		LocalDomains: []string{"example.test"},
		Spool:        spool,
		Log:          slog.New(slog.DiscardHandler),
	}
	if hooks != nil {
		opt.Hooks = hooks
	}
	addr, _ := smtptest.StartServer(b, opt)
	body := benchBody()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clients := make([]*smtp.Client, benchConns)
	for i := range clients {
		c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test", Timeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello(ctx); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}

	var next atomic.Int64
	var (
		mu     sync.Mutex
		failed error // the first failure
	)
	var wg sync.WaitGroup
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				env := &envelope.Envelope{
					Sender:     envelope.Address{Local: "sender", Domain: "example.org"},
					Recipients: []envelope.Recipient{{Address: envelope.Address{Local: fmt.Sprintf("user%d", n%100+1), Domain: "example.test"}}},
				}
				res, err := c.Send(ctx, env, bytes.NewReader(body))
				if err == nil && (len(res.Rcpts) != 1 || res.Rcpts[0].Code != 250) {
					err = fmt.Errorf("rcpt: %v", res.Rcpts)
				}
				if err != nil {
					mu.Lock()
					if failed == nil {
						failed = fmt.Errorf("session %d, message %d: %w", w, n, err)
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	if got := spool.committed.Load(); got != int64(b.N) {
		b.Fatalf("%d messages committed, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// benchSpool is a discarding spool that keeps each draft's content in
// memory until its commit (smtptest.DiscardSpool keeps none), as
// scripts/bench_test.go's does.
type benchSpool struct {
	n         atomic.Int64
	committed atomic.Int64
}

func (s *benchSpool) Create(ctx context.Context) (smtp.Draft, error) {
	return &benchDraft{s: s, id: strconv.FormatInt(s.n.Add(1), 36)}, nil
}

type benchDraft struct {
	s   *benchSpool
	id  string
	buf bytes.Buffer
}

func (d *benchDraft) ID() string                  { return d.id }
func (d *benchDraft) Write(p []byte) (int, error) { return d.buf.Write(p) }
func (d *benchDraft) Abort() error                { return nil }
func (d *benchDraft) Open() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(d.buf.Bytes())), nil
}
func (d *benchDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	d.s.committed.Add(1)
	return nil
}

// benchBody is a 2 KB message with a few header fields.
func benchBody() []byte {
	var buf bytes.Buffer
	buf.WriteString("From: sender@example.org\r\nTo: user1@example.test\r\nSubject: benchmark\r\nMessage-ID: <bench@example.org>\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for buf.Len()+len(line) <= benchBodySize {
		buf.WriteString(line)
	}
	buf.WriteString(strings.Repeat("y", benchBodySize-buf.Len()-2) + "\r\n")
	return buf.Bytes()
}
