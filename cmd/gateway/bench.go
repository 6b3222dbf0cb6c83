package main

// gateway bench: a load generator like Postfix's smtp-source. C workers
// send messages until N have been sent in all. In the reuse mode (the
// default) each worker holds one connection, says EHLO and pipelines when
// the server offers PIPELINING; in the smtp-source mode each message goes
// over a new connection, as Postfix's smtp-source sends it: HELO, one
// command at a time, QUIT after the message. With --starttls each
// connection says EHLO, STARTTLS and EHLO again before its mail, resuming
// an earlier connection's TLS session when the server allows (as Postfix's
// client does with its session cache) unless --tls-resume=false.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/textproto"
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

// The bench modes (--mode).
const (
	benchModeReuse  = "reuse"       // a connection per worker, EHLO, PIPELINING when offered
	benchModeSource = "smtp-source" // a connection per message, HELO, no pipelining, QUIT after each
)

// benchReport is what bench prints; with --json as one object.
type benchReport struct {
	Mode              string   `json:"mode"`     // benchModeReuse or benchModeSource
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
	o, err := parseBenchFlags(c, args)
	if err != nil {
		return err
	}
	b, err := newBench(o)
	if err != nil {
		return err
	}
	rep := b.run(ctx)
	if err := writeBenchReport(c, rep, o.jsonOut); err != nil {
		return err
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted after %d messages", rep.Messages)
	case rep.Failures > 0:
		return fmt.Errorf("%d of %d messages failed", rep.Failures, rep.Messages+rep.Failures)
	}
	return nil
}

// benchOptions are bench's flags, checked.
type benchOptions struct {
	server      string
	mode        string // benchModeReuse or benchModeSource
	messages    int    // in all
	concurrency int
	size        int // bytes per message, headers included
	rcpts       int // per message
	from        string
	toDomain    string
	jsonOut     bool // print the report as one JSON object
	client      smtp.ClientOptions
	tls         *tls.Config // STARTTLS with this config; nil = none
}

// parseBenchFlags reads bench's flags and checks them.
func parseBenchFlags(c *cli, args []string) (benchOptions, error) {
	var o benchOptions
	fs := newFlags(c, "bench", "--server HOST:PORT [--mode reuse|smtp-source] [--messages N] [--concurrency C] [--size BYTES] [--rcpts R] [flags]")
	fs.StringVar(&o.server, "server", "127.0.0.1:2525", "SMTP server, host:port")
	fs.StringVar(&o.mode, "mode", benchModeReuse, `how messages are sent: "reuse" (each connection sends one message after another; EHLO, PIPELINING when offered) or "smtp-source" (as Postfix's smtp-source: a new connection per message, HELO, one command at a time, QUIT after each message)`)
	fs.IntVar(&o.messages, "messages", 1000, "messages to send in all")
	fs.IntVar(&o.concurrency, "concurrency", 10, "connections, each sending messages one after another")
	fs.IntVar(&o.size, "size", 1024, "message size in bytes, headers included")
	fs.IntVar(&o.rcpts, "rcpts", 1, "recipients per message (rcptN@DOMAIN)")
	fs.StringVar(&o.from, "from", "bench@bench.test", "envelope sender")
	fs.StringVar(&o.toDomain, "to-domain", "example.test", "domain of the recipients")
	pipelining := fs.Bool("pipelining", true, "pipeline MAIL, RCPT and DATA when the server offers PIPELINING (reuse mode only)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the report as one JSON object")
	fs.StringVar(&o.client.LocalName, "helo", "bench.test", "EHLO (HELO in the smtp-source mode) name")
	fs.DurationVar(&o.client.Timeout, "timeout", 30*time.Second, "timeout of each SMTP command")
	starttls := fs.Bool("starttls", false, "STARTTLS on every connection before its mail (the smtp-source mode then says EHLO, not HELO); the server's certificate is not checked")
	resume := fs.Bool("tls-resume", true, "with --starttls, resume the TLS session of an earlier connection when the server allows it (false: a full handshake on every connection)")
	if err := parseNoArgs(fs, args); err != nil {
		return o, err
	}
	if *starttls {
		o.tls = benchTLSConfig(o.server, *resume, o.concurrency)
	}
	if o.messages < 1 || o.concurrency < 1 || o.rcpts < 1 {
		fs.Usage()
		return o, errUsage
	}
	if err := checkBenchMode(fs, o.mode); err != nil {
		return o, err
	}
	o.client.NoPipelining = !*pipelining
	return o, nil
}

// checkBenchMode checks --mode, and that the flags given apply to it.
func checkBenchMode(fs *flag.FlagSet, mode string) error {
	switch mode {
	case benchModeReuse:
		return nil
	case benchModeSource:
		var err error
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "pipelining" {
				err = fmt.Errorf("--pipelining: the %s mode never pipelines", benchModeSource)
			}
		})
		return err
	}
	return fmt.Errorf("--mode %q: want %s or %s", mode, benchModeReuse, benchModeSource)
}

// benchTLSConfig is the STARTTLS config of a bench against server:
// bench talks to servers its user runs, so any certificate is taken.
// With resume the workers share a session cache: one server name, so
// one session, the last one a handshake gave (TLS 1.3 servers give a
// new ticket on every connection, and accept a ticket more than once).
func benchTLSConfig(server string, resume bool, workers int) *tls.Config {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		host = server
	}
	cfg := &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(workers)
	}
	return cfg
}

// newBench builds the envelope and the message every worker sends.
func newBench(o benchOptions) (*bench, error) {
	sender, err := envelope.ParseAddress(o.from)
	if err != nil {
		return nil, fmt.Errorf("--from: %w", err)
	}
	to := make([]string, o.rcpts)
	for i := range to {
		to[i] = fmt.Sprintf("rcpt%d@%s", i+1, o.toDomain)
	}
	rcpts, err := parseRecipients("--to-domain", to)
	if err != nil {
		return nil, err
	}
	body, err := benchBody(o.size, sender.String(), rcpts[0].Address.String(), time.Now())
	if err != nil {
		return nil, err
	}
	return &bench{
		server: o.server, mode: o.mode, n: int64(o.messages), workers: min(o.concurrency, o.messages),
		env:  &envelope.Envelope{Sender: sender, Size: int64(o.size), Recipients: rcpts},
		body: body, opt: o.client, tls: o.tls,
	}, nil
}

// run sends every message and reports on the run.
func (b *bench) run(ctx context.Context) benchReport {
	cpu0 := cpuTime()
	start := time.Now()
	lat := b.runWorkers(ctx)
	elapsed := time.Since(start)
	return b.report(lat, elapsed, cpuTime()-cpu0)
}

// runWorkers runs the workers until all messages are claimed (or ctx is
// done) and returns each worker's latencies.
func (b *bench) runWorkers(ctx context.Context) [][]time.Duration {
	work := b.worker
	if b.mode == benchModeSource {
		work = b.sourceWorker
	}
	var wg sync.WaitGroup
	lat := make([][]time.Duration, b.workers)
	for i := range b.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					b.fail(fmt.Sprintf("worker panic: %v", r))
				}
			}()
			lat[i] = work(ctx)
		}()
	}
	wg.Wait()
	return lat
}

// report sums up a run that took elapsed and cpu, with the workers'
// latencies lat.
func (b *bench) report(lat [][]time.Duration, elapsed, cpu time.Duration) benchReport {
	all := slices.Concat(lat...)
	slices.Sort(all)
	rep := benchReport{
		Mode:              b.mode,
		Messages:          int64(len(all)),
		Failures:          b.failures.Load(),
		FailureReplies:    b.replies,
		Concurrency:       b.workers,
		Size:              int(b.env.Size),
		Rcpts:             len(b.env.Recipients),
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
	return rep
}

// bench is the state the workers share.
type bench struct {
	server  string
	mode    string // benchModeReuse or benchModeSource
	n       int64  // messages to send in all
	workers int
	env     *envelope.Envelope
	body    []byte
	opt     smtp.ClientOptions
	tls     *tls.Config // STARTTLS with this config; nil = none

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

// sourceWorker sends messages as Postfix's smtp-source does, each in a
// session of its own (sourceSession), until all are claimed. It returns the
// latencies of the messages accepted.
func (b *bench) sourceWorker(ctx context.Context) []time.Duration {
	lat := make([]time.Duration, 0, b.n/int64(b.workers)+1)
	for ctx.Err() == nil && b.next.Add(1) <= b.n {
		d, err := b.sourceSession(ctx)
		if err != nil {
			b.fail(err.Error())
			continue
		}
		lat = append(lat, d)
	}
	return lat
}

// sourceSession sends one message the way Postfix's smtp-source does: a
// new connection, HELO, then MAIL, each RCPT, DATA and the message, each
// waiting for its reply, and QUIT. It returns the time from the connect to
// the reply after the message. The session counts only if every reply,
// QUIT's included, is the one expected.
func (b *bench) sourceSession(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	s, err := dialSource(ctx, b.server, b.opt.Timeout)
	if err != nil {
		return 0, err
	}
	defer s.close()
	if err := s.expect(ctx, 220, "greeting"); err != nil {
		return 0, err
	}
	if err := s.hello(ctx, b.opt.LocalName, b.tls); err != nil {
		return 0, err
	}
	if err := s.cmd(ctx, 250, "MAIL FROM:<%s>", b.env.Sender); err != nil {
		return 0, err
	}
	for _, r := range b.env.Recipients {
		if err := s.cmd(ctx, 25, "RCPT TO:<%s>", r.Address); err != nil { // 250 or 251
			return 0, err
		}
	}
	if err := s.cmd(ctx, 354, "DATA"); err != nil {
		return 0, err
	}
	if err := s.message(ctx, b.body); err != nil {
		return 0, err
	}
	d := time.Since(start)
	return d, s.cmd(ctx, 221, "QUIT")
}

// hello says HELO name, or with cfg (not nil) EHLO, STARTTLS, the TLS
// handshake and EHLO again.
func (s *sourceConn) hello(ctx context.Context, name string, cfg *tls.Config) error {
	if cfg == nil {
		return s.cmd(ctx, 250, "HELO %s", name)
	}
	if err := s.cmd(ctx, 250, "EHLO %s", name); err != nil {
		return err
	}
	if err := s.cmd(ctx, 220, "STARTTLS"); err != nil {
		return err
	}
	if err := s.arm(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	tc := tls.Client(s.conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	s.conn, s.text = tc, textproto.NewConn(tc)
	return s.cmd(ctx, 250, "EHLO %s", name)
}

// sourceConn is one smtp-source session's connection. Replies are read
// with net/textproto, which bounds no line: bench talks to servers its
// user runs.
type sourceConn struct {
	conn    net.Conn
	text    *textproto.Conn
	timeout time.Duration // per command
	stop    func() bool   // unregisters the abort on ctx's end
}

// dialSource connects to server; the session's I/O fails as soon as ctx
// is done.
func dialSource(ctx context.Context, server string, timeout time.Duration) (*sourceConn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return &sourceConn{conn: conn, text: textproto.NewConn(conn), timeout: timeout, stop: stop}, nil
}

func (s *sourceConn) close() {
	s.stop()
	s.conn.Close()
}

// arm gives the next command and its reply the per-command timeout,
// unless ctx is already done.
func (s *sourceConn) arm(ctx context.Context) error {
	if err := s.conn.SetDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	return ctx.Err() // after the deadline is set: AfterFunc cannot be undone by it
}

// cmd sends one command line and reads its reply, which must have the
// code want (a 2-digit want takes any code that starts with it).
func (s *sourceConn) cmd(ctx context.Context, want int, format string, args ...any) error {
	verb, _, _ := strings.Cut(format, " ")
	if err := s.arm(ctx); err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	if err := s.text.PrintfLine(format, args...); err != nil {
		return fmt.Errorf("%s: %w", verb, err)
	}
	return s.expect(ctx, want, verb)
}

// message sends the content and the final dot and reads the reply, which
// must be a 250. The content needs no dot-stuffing: benchBody's lines
// never start with a dot, and the content ends with CRLF.
func (s *sourceConn) message(ctx context.Context, content []byte) error {
	if err := s.arm(ctx); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	s.text.W.Write(content)
	s.text.W.WriteString(".\r\n")
	if err := s.text.W.Flush(); err != nil {
		return fmt.Errorf("message: %w", err)
	}
	return s.expect(ctx, 250, "message")
}

// expect reads one reply, which must have the code want; what names the
// step in the error, which wraps an smtp.Reply when the server answered
// otherwise.
func (s *sourceConn) expect(ctx context.Context, want int, what string) error {
	if err := s.arm(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if _, _, err := s.text.ReadResponse(want); err != nil {
		var te *textproto.Error
		if errors.As(err, &te) { // a reply, not a failure to read one: say it as the server did
			err = smtp.Reply{Code: te.Code, Lines: strings.Split(te.Msg, "\n")}
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
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
	if b.tls != nil {
		if err := cl.StartTLS(ctx, b.tls); err != nil {
			cl.Close()
			return nil, err
		}
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

// writeBenchReport prints r on stdout, as one JSON object or as text.
func writeBenchReport(c *cli, r benchReport, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(c.Stdout).Encode(r)
	}
	printBenchReport(c, r)
	return nil
}

func printBenchReport(c *cli, r benchReport) {
	fmt.Fprintf(c.Stdout, "messages: %d sent, %d failed (%d connections, %d bytes, %d recipients each, %s mode)\n",
		r.Messages, r.Failures, r.Concurrency, r.Size, r.Rcpts, r.Mode)
	for _, f := range r.FailureReplies {
		fmt.Fprintf(c.Stdout, "  failure: %s\n", f)
	}
	fmt.Fprintf(c.Stdout, "elapsed: %.3fs, %.1f messages/s\n", r.ElapsedSeconds, r.MessagesPerSecond)
	fmt.Fprintf(c.Stdout, "latency: p50 %.3fms, p90 %.3fms, p99 %.3fms, max %.3fms\n",
		r.LatencyP50ms, r.LatencyP90ms, r.LatencyP99ms, r.LatencyMaxms)
	fmt.Fprintf(c.Stdout, "cpu: %.3fs, %.1fµs/message\n", r.CPUSeconds, r.CPUPerMessageUS)
}
