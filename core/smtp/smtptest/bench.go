package smtptest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

// The accept benchmarks' load: the scripts and plugin host benchmarks
// measure their hooks' cost against the same run without hooks.
const (
	BenchConns    = 8    // concurrent client sessions
	BenchBodySize = 2048 // bytes per message
)

// BenchAccept measures accept throughput: a real Server on 127.0.0.1:0
// with hooks (nil = none) and a ContentSpool, driven by BenchConns
// sessions each sending BenchBody messages pipelined, b.N in all. It
// reports msgs/s, and fails on any refusal or when the spool did not
// commit exactly b.N messages.
func BenchAccept(b *testing.B, hooks hook.Dispatcher) {
	spool := &ContentSpool{}
	addr := startBenchServer(b, hooks, spool)
	BenchLoad(b, addr, BenchBody())
	if got := spool.committed.Load(); got != int64(b.N) {
		b.Fatalf("%d messages committed, want %d", got, b.N)
	}
}

// BenchLoad is BenchAccept's load on the server at addr: BenchConns
// sessions each sending body pipelined, b.N messages in all, from
// sender@example.org to userN@example.test. It reports msgs/s and fails on
// any refusal.
func BenchLoad(b *testing.B, addr string, body []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clients := dialBenchClients(ctx, b, addr)

	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var next atomic.Int64
	failed := sendOver(ctx, clients, int64(b.N), &next, body)
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}

// sendOver sends n messages over clients at once, each session taking
// the next one as it is done with its last, numbered on from *next, and
// returns the first refusal or failure. The sessions' goroutines carry
// ctx's pprof labels.
func sendOver(ctx context.Context, clients []*smtp.Client, n int64, next *atomic.Int64, body []byte) error {
	var (
		sent   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed error // the first failure
	)
	for w, c := range clients {
		wg.Go(func() {
			pprof.SetGoroutineLabels(ctx)
			for sent.Add(1) <= n {
				m := next.Add(1)
				if err := sendBenchMessage(ctx, c, m, body); err != nil {
					mu.Lock()
					if failed == nil {
						failed = fmt.Errorf("session %d, message %d: %w", w, m, err)
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return failed
}

// startBenchServer starts the benchmarks' server: a real Server on
// 127.0.0.1:0 with hooks (nil = none) and spool.
func startBenchServer(b *testing.B, hooks hook.Dispatcher, spool smtp.Spool) (addr string) {
	addr, _ = StartServer(b, smtp.Options{
		Hostname:     "mx.example.test",
		LocalDomains: []string{"example.test"},
		Spool:        spool,
		Hooks:        hooks,
		Log:          slog.New(slog.DiscardHandler),
	})
	return addr
}

// DurableSpool opens a queue.Spool in a temporary folder of b's, closed
// when b ends, as a server's spool: a commit returns once its batch is
// fsync'd, as the gateway's does. Nothing delivers what it keeps.
func DurableSpool(b *testing.B) smtp.Spool {
	s, err := queue.Open(b.TempDir(), queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return queueSpool{s}
}

// queueSpool is a queue.Spool as the SMTP server sees it, and its Stats.
type queueSpool struct{ s *queue.Spool }

func (q queueSpool) Create(ctx context.Context) (smtp.Draft, error) { return q.s.Create(ctx) }
func (q queueSpool) Stats() queue.Stats                             { return q.s.Stats() }

// dialBenchClients opens BenchConns sessions to addr, greeted, closed
// when the benchmark ends.
func dialBenchClients(ctx context.Context, b *testing.B, addr string) []*smtp.Client {
	clients := make([]*smtp.Client, BenchConns)
	for i := range clients {
		c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test", Timeout: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if err := c.Hello(ctx); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	return clients
}

// sendBenchMessage sends the benchmarks' message number n over c, from
// sender@example.org to one of user1..user100@example.test, and fails
// unless its recipient is taken.
func sendBenchMessage(ctx context.Context, c *smtp.Client, n int64, body []byte) error {
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "sender", Domain: "example.org"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: fmt.Sprintf("user%d", n%100+1), Domain: "example.test"}}},
	}
	res, err := c.Send(ctx, env, bytes.NewReader(body))
	if err == nil && (len(res.Rcpts) != 1 || res.Rcpts[0].Code != 250) {
		err = fmt.Errorf("rcpt: %v", res.Rcpts)
	}
	return err
}

// cpuTime is the user and system time of this process so far: server and
// clients both, which on a shared machine varies less than throughput.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ContentSpool is a discarding spool that keeps each draft's content in
// memory until its commit, so that a data hook can read the message
// (DiscardSpool keeps none).
type ContentSpool struct {
	n         atomic.Int64
	committed atomic.Int64
}

func (s *ContentSpool) Create(ctx context.Context) (smtp.Draft, error) {
	return &benchDraft{s: s, id: strconv.FormatInt(s.n.Add(1), 36)}, nil
}

type benchDraft struct {
	s   *ContentSpool
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

// BenchBody is a BenchBodySize message with a few header fields.
func BenchBody() []byte {
	var buf bytes.Buffer
	buf.WriteString("From: sender@example.org\r\nTo: user1@example.test\r\nSubject: benchmark\r\nMessage-ID: <bench@example.org>\r\n\r\n")
	line := strings.Repeat("x", 76) + "\r\n"
	for buf.Len()+len(line) <= BenchBodySize {
		buf.WriteString(line)
	}
	buf.WriteString(strings.Repeat("y", BenchBodySize-buf.Len()-2) + "\r\n")
	return buf.Bytes()
}
