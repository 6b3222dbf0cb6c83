package scripts

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/lua"
	"github.com/mailgate/gateway/core/message"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// benchScript is the hook of the accept benchmarks: a table look-up and an
// accept at rcpt, a header read at data.
const benchScript = `
local known = {}
for i = 1, 100 do known["user" .. i .. "@example.test"] = true end

function on_rcpt(ctx)
  if known[ctx.txn.rcpt] then return gw.accept() end
  return gw.continue()
end

function on_data(ctx)
  local subject = ctx.msg:header("Subject")
  if subject == nil then return gw.continue() end
  return gw.continue()
end
`

// Load of the accept benchmarks.
const (
	benchConns    = 8    // concurrent client sessions
	benchBodySize = 2048 // bytes per message
)

// BenchmarkAcceptNoHooks is the baseline of BenchmarkAcceptWithLua: the
// same server and load without a hook chain.
func BenchmarkAcceptNoHooks(b *testing.B) { benchAccept(b, nil) }

// BenchmarkAcceptWithLua measures a real server (discarding spool) with
// one Lua script answering rcpt and data, driven by benchConns sessions
// sending 2 KB messages with pipelining. It reports msgs/s; compare with
// BenchmarkAcceptNoHooks.
func BenchmarkAcceptWithLua(b *testing.B) {
	s := loadBenchScript(b)
	benchAccept(b, hook.NewChain(nil, hook.Entry{Handler: s, OnError: hook.OnErrorDefer, Timeout: time.Second}))
}

// BenchmarkAcceptWithLuaRcptOnly is BenchmarkAcceptWithLua without on_data:
// the difference between the two is the data stage's cost (opening the
// draft, parsing the header for ctx.msg, the call).
func BenchmarkAcceptWithLuaRcptOnly(b *testing.B) {
	src, _, _ := strings.Cut(benchScript, "function on_data")
	s, err := lua.Load(lua.Options{Name: "bench", Source: src})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	benchAccept(b, hook.NewChain(nil, hook.Entry{Handler: s, OnError: hook.OnErrorDefer, Timeout: time.Second}))
}

func loadBenchScript(b *testing.B) *lua.Script {
	b.Helper()
	s, err := lua.Load(lua.Options{Name: "bench", Source: benchScript})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
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
// memory until its commit, so that the data hook can read the message
// (smtptest.DiscardSpool keeps none). Both accept benchmarks use it.
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

// BenchmarkLuaRcptCall is the cost of one rcpt call of the script:
// Handle directly, no chain, no network.
func BenchmarkLuaRcptCall(b *testing.B) {
	s := loadBenchScript(b)
	sess := &hook.Session{ID: "bench", ClientIP: netip.MustParseAddr("192.0.2.1"), Port: 40000, HELO: "client.test", ESMTP: true}
	env := &envelope.Envelope{Sender: envelope.Address{Local: "sender", Domain: "example.org"}}
	rcpt := envelope.Recipient{Address: envelope.Address{Local: "user42", Domain: "example.test"}}
	req := &hook.Request{Stage: sdk.StageRcpt, Session: sess, Envelope: env, Rcpt: &rcpt}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, _, err := s.Handle(ctx, req)
		if err != nil || d.Verdict != sdk.Accept {
			b.Fatalf("Handle = %v, %v", d, err)
		}
	}
}

// BenchmarkLuaDataCall is the cost of one data call of the script (a
// header read through the lazy message view): Handle directly.
func BenchmarkLuaDataCall(b *testing.B) {
	s := loadBenchScript(b)
	body := benchBody()
	sess := &hook.Session{ID: "bench", ClientIP: netip.MustParseAddr("192.0.2.1"), Port: 40000, HELO: "client.test", ESMTP: true}
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "sender", Domain: "example.org"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "user1", Domain: "example.test"}}},
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		view := message.NewView(int64(len(body)), func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(body)), nil
		})
		req := &hook.Request{Stage: sdk.StageData, Session: sess, Envelope: env, Message: view}
		if _, _, err := s.Handle(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
