package main

// gateway bench: a load generator like Postfix's smtp-source. C workers
// each hold one connection and send messages over it until N have been
// sent in all.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/smtp"
)

const benchMaxFailureReplies = 5

// benchReport is what bench prints; with --json as one object.
type benchReport struct {
	Messages          int64    `json:"messages"` // accepted for every recipient
	Failures          int64    `json:"failures"` // messages not accepted (or not sent) for some recipient
	FailureReplies    []string `json:"failure_replies,omitempty"`
	Concurrency       int      `json:"concurrency"`
	Size              int      `json:"size"`
	Rcpts             int      `json:"rcpts"`
	ElapsedSeconds    float64  `json:"elapsed_seconds"`
	MessagesPerSecond float64  `json:"messages_per_second"`
	LatencyP50ms      float64  `json:"latency_p50_ms"`
	LatencyP90ms      float64  `json:"latency_p90_ms"`
	LatencyP99ms      float64  `json:"latency_p99_ms"`
	LatencyMaxms      float64  `json:"latency_max_ms"`
	CPUSeconds        float64  `json:"cpu_seconds"`        // user + system time of this process
	CPUPerMessageUS   float64  `json:"cpu_per_message_us"` // CPUSeconds per message attempted, in µs
}

func runBench(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "bench", "--server HOST:PORT [--messages N] [--concurrency C] [--size BYTES] [--rcpts R] [flags]")
	server := fs.String("server", "127.0.0.1:2525", "SMTP server, host:port")
	messages := fs.Int("messages", 1000, "messages to send in all")
	concurrency := fs.Int("concurrency", 10, "connections, each sending messages one after another")
	size := fs.Int("size", 1024, "message size in bytes, headers included")
	rcpts := fs.Int("rcpts", 1, "recipients per message (rcptN@DOMAIN)")
	from := fs.String("from", "bench@bench.test", "envelope sender")
	toDomain := fs.String("to-domain", "example.test", "domain of the recipients")
	pipelining := fs.Bool("pipelining", true, "pipeline MAIL, RCPT and DATA when the server offers PIPELINING")
	jsonOut := fs.Bool("json", false, "print the report as one JSON object")
	helo := fs.String("helo", "bench.test", "EHLO name")
	timeout := fs.Duration("timeout", 30*time.Second, "timeout of each SMTP command")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *messages < 1 || *concurrency < 1 || *rcpts < 1 {
		fs.Usage()
		return errUsage
	}
	sender, err := envelope.ParseAddress(*from)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	env := &envelope.Envelope{Sender: sender, Size: int64(*size)}
	for i := range *rcpts {
		a, err := envelope.ParseAddress(fmt.Sprintf("rcpt%d@%s", i+1, *toDomain))
		if err != nil {
			return fmt.Errorf("--to-domain: %w", err)
		}
		env.Recipients = append(env.Recipients, envelope.Recipient{Address: a})
	}
	body, err := benchBody(*size, sender.String(), env.Recipients[0].Address.String(), time.Now())
	if err != nil {
		return err
	}

	workers := min(*concurrency, *messages)
	b := &bench{
		server: *server, n: int64(*messages), workers: workers, env: env, body: body,
		opt: smtp.ClientOptions{LocalName: *helo, Timeout: *timeout, NoPipelining: !*pipelining},
	}
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	lat := make([][]time.Duration, workers)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					b.fail(fmt.Sprintf("worker panic: %v", r))
				}
			}()
			lat[i] = b.worker(ctx)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0

	all := slices.Concat(lat...)
	slices.Sort(all)
	rep := benchReport{
		Messages:          int64(len(all)),
		Failures:          b.failures.Load(),
		FailureReplies:    b.replies,
		Concurrency:       workers,
		Size:              *size,
		Rcpts:             *rcpts,
		ElapsedSeconds:    elapsed.Seconds(),
		MessagesPerSecond: float64(len(all)) / elapsed.Seconds(),
		LatencyP50ms:      ms(percentile(all, 0.50)),
		LatencyP90ms:      ms(percentile(all, 0.90)),
		LatencyP99ms:      ms(percentile(all, 0.99)),
		CPUSeconds:        cpu.Seconds(),
	}
	if len(all) > 0 {
		rep.LatencyMaxms = ms(all[len(all)-1])
	}
	if attempted := rep.Messages + rep.Failures; attempted > 0 {
		rep.CPUPerMessageUS = float64(cpu.Microseconds()) / float64(attempted)
	}
	if *jsonOut {
		enc := json.NewEncoder(c.Stdout)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printBenchReport(c, rep)
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted after %d messages", rep.Messages)
	case rep.Failures > 0:
		return fmt.Errorf("%d of %d messages failed", rep.Failures, rep.Messages+rep.Failures)
	}
	return nil
}

// bench is the state the workers share.
type bench struct {
	server  string
	n       int64 // messages to send in all
	workers int
	env     *envelope.Envelope
	body    []byte
	opt     smtp.ClientOptions

	next     atomic.Int64 // messages claimed so far
	failures atomic.Int64

	mu      sync.Mutex
	replies []string // the first few distinct failure texts
}

// worker sends messages over one connection until all are claimed; it
// reconnects after a connection-level failure. It returns the latencies of
// the messages accepted.
func (b *bench) worker(ctx context.Context) []time.Duration {
	lat := make([]time.Duration, 0, b.n/int64(b.workers)+1)
	var cl *smtp.Client
	defer func() {
		if cl != nil {
			qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			cl.Quit(qctx)
			cancel()
		}
	}()
	rd := bytes.NewReader(nil)
	for ctx.Err() == nil && b.next.Add(1) <= b.n {
		if cl == nil {
			var err error
			if cl, err = b.connect(ctx); err != nil {
				b.fail(err.Error())
				continue
			}
		}
		rd.Reset(b.body)
		start := time.Now()
		res, err := cl.Send(ctx, b.env, rd)
		d := time.Since(start)
		if err != nil {
			b.fail(err.Error())
			var r smtp.Reply
			if !errors.As(err, &r) || r.Code == 421 {
				cl.Close()
				cl = nil
			}
			continue
		}
		ok := true
		for _, r := range res.Rcpts {
			if r.Code/100 != 2 {
				b.fail(r.String())
				ok = false
				break
			}
		}
		if ok {
			lat = append(lat, d)
		}
	}
	return lat
}

func (b *bench) connect(ctx context.Context) (*smtp.Client, error) {
	cl, err := smtp.Dial(ctx, b.server, b.opt)
	if err != nil {
		return nil, err
	}
	if err := cl.Hello(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

func (b *bench) fail(text string) {
	b.failures.Add(1)
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.replies) < benchMaxFailureReplies && !slices.Contains(b.replies, text) {
		b.replies = append(b.replies, text)
	}
}

// benchBody builds a message of exactly size bytes: a header block, then
// filler lines of 76 characters (the last ones shorter), CRLF throughout.
func benchBody(size int, from, to string, now time.Time) ([]byte, error) {
	var h strings.Builder
	fmt.Fprintf(&h, "From: <%s>\r\n", from)
	fmt.Fprintf(&h, "To: <%s>\r\n", to)
	fmt.Fprintf(&h, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&h, "Message-ID: <bench.%d@bench.test>\r\n", now.UnixNano())
	subject := "Subject: gateway bench"
	rest := size - h.Len() - len(subject) - 4 // subject's CRLF and the empty line
	if rest < 0 {
		return nil, fmt.Errorf("--size %d: at least %d bytes are needed for the headers", size, size-rest)
	}
	if rest == 1 { // no line fits in 1 byte: lengthen the subject instead
		subject += "."
		rest = 0
	}
	h.WriteString(subject)
	h.WriteString("\r\n\r\n")

	const filler = "The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnopqrstuvwxyz"
	out := make([]byte, 0, size)
	out = append(out, h.String()...)
	for rest > 0 {
		var n int // characters on this line, before CRLF
		switch {
		case rest == 79: // 76+2 would leave 1 byte: split as 75+2 and 0+2
			n = 75
		case rest >= 78:
			n = 76
		default:
			n = rest - 2
		}
		out = append(out, filler[:n]...)
		out = append(out, '\r', '\n')
		rest -= n + 2
	}
	return out, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func printBenchReport(c *cli, r benchReport) {
	fmt.Fprintf(c.Stdout, "messages: %d sent, %d failed (%d connections, %d bytes, %d recipients each)\n",
		r.Messages, r.Failures, r.Concurrency, r.Size, r.Rcpts)
	for _, f := range r.FailureReplies {
		fmt.Fprintf(c.Stdout, "  failure: %s\n", f)
	}
	fmt.Fprintf(c.Stdout, "elapsed: %.3fs, %.1f messages/s\n", r.ElapsedSeconds, r.MessagesPerSecond)
	fmt.Fprintf(c.Stdout, "latency: p50 %.3fms, p90 %.3fms, p99 %.3fms, max %.3fms\n",
		r.LatencyP50ms, r.LatencyP90ms, r.LatencyP99ms, r.LatencyMaxms)
	fmt.Fprintf(c.Stdout, "cpu: %.3fs, %.1fµs/message\n", r.CPUSeconds, r.CPUPerMessageUS)
}
