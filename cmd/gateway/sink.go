package main

// gateway sink: an SMTP server that accepts (or refuses, as told) and counts
// mail, like Postfix's smtp-sink. With --save it keeps each message for
// tests of the delivery engine; with --journal it appends each one to a
// file synced before the 250, the floor of a durable server (benchmarks).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/gateway"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/sdk"
)

const sinkShutdownTimeout = 10 * time.Second

func runSink(ctx context.Context, c *cli, args []string) error {
	o, err := parseSinkFlags(c, args)
	if err != nil {
		return err
	}
	if o.save != "" {
		if err := os.MkdirAll(o.save, 0o755); err != nil {
			return err
		}
	}
	log, err := newLogger(c.Stderr, config.Log{Level: o.logLevel})
	if err != nil {
		return err
	}
	spool := newSinkSpool(o.save)
	if o.journal != "" {
		if spool.journal, err = openSinkJournal(o.journal); err != nil {
			return err
		}
		defer spool.journal.Close()
	}
	srv, err := newSinkServer(o, spool, log)
	if err != nil {
		return err
	}
	ln, err := smtp.Listen(context.Background(), o.listen)
	if err != nil {
		return err
	}
	if o.dropMidData {
		ln = dropListener{ln}
	}
	fmt.Fprintf(c.Stdout, "listening on %s\n", ln.Addr())
	return serveSink(ctx, c, srv, ln, spool, o.report, log)
}

// sinkOptions are the sink's flags, checked.
type sinkOptions struct {
	listen      string
	hostname    string
	hooks       sinkHooks
	save        string        // "" keeps nothing
	journal     string        // "" syncs nothing
	report      time.Duration // 0: only the totals at the end
	maxSize     int64
	bare        string // "reject" or "fix"
	logLevel    string
	dropMidData bool
	tls         *tls.Config // STARTTLS offered with this config; nil = not offered
}

// parseSinkFlags reads the sink's flags and checks them.
func parseSinkFlags(c *cli, args []string) (sinkOptions, error) {
	var o sinkOptions
	fs := newFlags(c, "sink", "--listen HOST:PORT [flags]")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:2525", "address to listen on (port 0: any free port)")
	fs.StringVar(&o.hostname, "hostname", "sink.test", "name in the greeting, EHLO reply and Received header")
	mailReply := fs.String("mail-reply", "", `answer every MAIL FROM with this reply, "CODE [X.Y.Z] text" (4xx or 5xx)`)
	rcptReply := fs.String("rcpt-reply", "", `answer every RCPT TO with this reply, "CODE [X.Y.Z] text" (4xx or 5xx)`)
	dataReply := fs.String("data-reply", "", `answer every message (after the final ".") with this reply, "CODE [X.Y.Z] text" (4xx or 5xx)`)
	fs.StringVar(&o.save, "save", "", "keep each message as DIR/<id>.eml (with the Received header) and its envelope as DIR/<id>.json")
	fs.StringVar(&o.journal, "journal", "", "append each message (Received header and content) to this file and sync it before the 250, messages committed meanwhile sharing one sync: the floor of a durable server, for benchmarks")
	fs.DurationVar(&o.report, "report", 0, "print a running count, and when the latest message came (last=, Unix seconds), at this interval (0: only the totals at the end)")
	fs.Int64Var(&o.maxSize, "max-size", 1<<30, "largest message accepted, in bytes")
	fs.StringVar(&o.bare, "bare-line-endings", "reject", `a message with a bare CR or LF: "reject" or "fix"`)
	fs.StringVar(&o.logLevel, "log-level", "warn", "server log level on stderr: debug, info, warn or error")
	certFile := fs.String("tls-cert", "", "offer STARTTLS with this certificate (PEM; with --tls-key)")
	keyFile := fs.String("tls-key", "", "the private key of --tls-cert (PEM)")
	fs.BoolVar(&o.dropMidData, "drop-mid-data", false, "close the connection once message content starts arriving, without a reply (tests a client's handling of a dropped DATA)")
	if err := parseNoArgs(fs, args); err != nil {
		return o, err
	}
	var err error
	if o.hooks, err = newSinkHooks(*mailReply, *rcptReply, *dataReply); err != nil {
		return o, err
	}
	if o.bare != "reject" && o.bare != "fix" {
		return o, fmt.Errorf("--bare-line-endings %q: want reject or fix", o.bare)
	}
	if o.save != "" && o.journal != "" {
		return o, errors.New("--save and --journal: choose one")
	}
	if o.maxSize <= 0 {
		return o, fmt.Errorf("--max-size %d: must be positive", o.maxSize)
	}
	if (*certFile == "") != (*keyFile == "") {
		return o, errors.New("--tls-cert and --tls-key: give both or neither")
	}
	if *certFile != "" {
		if o.tls, err = gateway.LoadTLS(&config.TLS{Cert: *certFile, Key: *keyFile}); err != nil {
			return o, err
		}
	}
	return o, nil
}

// newSinkServer makes an open relay with generous limits that answers
// through the sink's hooks and commits to spool.
func newSinkServer(o sinkOptions, spool *sinkSpool, log *slog.Logger) (*smtp.Server, error) {
	return smtp.NewServer(smtp.Options{
		Hostname: o.hostname,
		Listener: config.Listener{
			Name:                "sink",
			Address:             o.listen,
			MaxMessageSize:      o.maxSize,
			MaxRecipients:       10000,
			MaxLineLength:       4096,
			MaxHeaderSize:       o.maxSize,
			MaxConnections:      10000,
			MaxConnectionsPerIP: 10000,
			MaxErrors:           100,
			BareLineEndings:     o.bare,
			Timeouts: config.Timeouts{
				Command:   5 * time.Minute,
				DataBlock: 3 * time.Minute,
				Message:   10 * time.Minute,
			},
		},
		// An open relay: the sink takes mail for anyone from anyone.
		RelayNetworks: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		Hooks:         o.hooks,
		Spool:         spool,
		TLS:           o.tls,
		Log:           log.With("listener", "sink"),
	})
}

// serveSink serves ln until ctx is done or the server stops by itself,
// printing a running count every report (if not 0), then stops the server
// and prints the totals.
func serveSink(ctx context.Context, c *cli, srv *smtp.Server, ln net.Listener, spool *sinkSpool, report time.Duration, log *slog.Logger) error {
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	serveResult, stopped := spool.reportUntil(ctx, c.Stdout, report, serveErr)

	// ctx is done: the grace period needs a context of its own.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sinkShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(stopCtx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	if !stopped {
		serveResult = <-serveErr
	}
	fmt.Fprintf(c.Stdout, "messages=%d bytes=%d\n", spool.messages.Load(), spool.bytes.Load())
	if serveResult != nil && !errors.Is(serveResult, net.ErrClosed) {
		return serveResult
	}
	return nil
}

// reportUntil prints the count, the rate and when the latest message came
// (last=, Unix seconds: what a benchmark times end to end by) to w every
// interval (if not 0)
// until ctx is done or serveErr gives the server's result. stopped says
// whether it did: then result is that result.
func (s *sinkSpool) reportUntil(ctx context.Context, w io.Writer, every time.Duration, serveErr <-chan error) (result error, stopped bool) {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	last, lastAt := int64(0), time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil, false
		case err := <-serveErr:
			return err, true
		case now := <-tick:
			m, b, at := s.messages.Load(), s.bytes.Load(), s.last.Load()
			rate := float64(m-last) / now.Sub(lastAt).Seconds()
			fmt.Fprintf(w, "messages=%d bytes=%d rate=%.1f/s last=%d.%09d\n", m, b, rate, at/1e9, at%1e9)
			last, lastAt = m, now
		}
	}
}

// sinkHooks answers the mail, rcpt and data stages with the replies chosen
// on the command line; other stages (and unset replies) continue.
type sinkHooks struct {
	mail, rcpt, data *sdk.Decision
}

func newSinkHooks(mail, rcpt, data string) (sinkHooks, error) {
	var h sinkHooks
	var err error
	if h.mail, err = parseSinkReply("mail-reply", mail, sdk.StageMail); err != nil {
		return h, err
	}
	if h.rcpt, err = parseSinkReply("rcpt-reply", rcpt, sdk.StageRcpt); err != nil {
		return h, err
	}
	if h.data, err = parseSinkReply("data-reply", data, sdk.StageData); err != nil {
		return h, err
	}
	return h, nil
}

// parseSinkReply turns "CODE [X.Y.Z] text" into a Reject (5xx) or Defer
// (4xx) decision valid at stage; "" is no decision.
func parseSinkReply(flagName, s string, stage sdk.Stage) (*sdk.Decision, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("--%s %q: %s", flagName, s, fmt.Sprintf(format, a...))
	}
	codeText, rest, _ := strings.Cut(s, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || len(codeText) != 3 {
		return nil, bad("want a 3-digit reply code first")
	}
	var enh sdk.EnhancedCode
	if tok, after, _ := strings.Cut(rest, " "); tok != "" && tok[0] >= '0' && tok[0] <= '9' && strings.Contains(tok, ".") {
		if enh, err = sdk.ParseEnhancedCode(tok); err != nil {
			return nil, bad("%v", err)
		}
		rest = after
	}
	var d sdk.Decision
	switch code / 100 {
	case 4:
		d = sdk.DeferDecision(code, enh, rest)
	case 5:
		d = sdk.RejectDecision(code, enh, rest)
	default:
		return nil, bad("want a 4xx or 5xx code")
	}
	d = d.WithReason("sink --" + flagName)
	if err := d.Validate(stage); err != nil {
		return nil, bad("%v", err)
	}
	return &d, nil
}

// Dispatch implements hook.Dispatcher.
func (h sinkHooks) Dispatch(ctx context.Context, req *hook.Request) hook.Result {
	var d *sdk.Decision
	switch req.Stage {
	case sdk.StageMail:
		d = h.mail
	case sdk.StageRcpt:
		d = h.rcpt
	case sdk.StageData:
		d = h.data
	}
	if d == nil {
		return hook.Result{}
	}
	return hook.Result{Decision: *d, Handler: "sink"}
}

// sinkSpool counts what the server accepts. With a directory it also keeps
// each message: DIR/<id>.json (the envelope) is written first, then
// DIR/<id>.eml (Received header and content), each atomically (a temporary
// file renamed into place), so a reader that sees the .eml finds the .json.
type sinkSpool struct {
	dir      string
	journal  *sinkJournal // nil: none
	prefix   string       // makes IDs unique across runs
	seq      atomic.Uint64
	messages atomic.Int64 // committed messages
	bytes    atomic.Int64 // their content bytes (without the header the server adds)
	last     atomic.Int64 // when the latest was committed, Unix ns
}

// committed counts a message of n content bytes committed at t. The time
// goes first, and only forward (commits run concurrently): a report that
// reads the count and then the time has the time of the message it counts
// last, or a later one.
func (s *sinkSpool) committed(t time.Time, n int64) {
	at := t.UnixNano()
	for old := s.last.Load(); at > old && !s.last.CompareAndSwap(old, at); old = s.last.Load() {
	}
	s.messages.Add(1)
	s.bytes.Add(n)
}

func newSinkSpool(dir string) *sinkSpool {
	return &sinkSpool{dir: dir, prefix: strings.ToUpper(strconv.FormatInt(time.Now().UnixNano()/int64(time.Millisecond), 36))}
}

// Create implements smtp.Spool.
func (s *sinkSpool) Create(ctx context.Context) (smtp.Draft, error) {
	return &sinkDraft{spool: s, id: fmt.Sprintf("%s%06d", s.prefix, s.seq.Add(1))}, nil
}

type sinkDraft struct {
	spool *sinkSpool
	id    string
	n     int64
	buf   []byte // the content, only with --save or --journal
}

func (d *sinkDraft) ID() string { return d.id }

func (d *sinkDraft) Write(p []byte) (int, error) {
	d.n += int64(len(p))
	if d.spool.dir != "" || d.spool.journal != nil {
		d.buf = append(d.buf, p...)
	}
	return len(p), nil
}

func (d *sinkDraft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	if dir := d.spool.dir; dir != "" {
		meta, err := json.MarshalIndent(newSavedEnvelope(d.id, env), "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(dir, d.id+".json", meta, []byte("\n")); err != nil {
			return err
		}
		if err := writeFileAtomic(dir, d.id+".eml", header, d.buf); err != nil {
			return err
		}
		d.buf = nil
	}
	if j := d.spool.journal; j != nil {
		if err := j.append(header, d.buf); err != nil {
			return err
		}
		d.buf = nil
	}
	d.spool.committed(time.Now(), d.n)
	return nil
}

// Open implements smtp.Draft. The sink keeps no content to read back
// (--save and --journal write it only at Commit), so hooks that read the message at the
// data stage get an error from the view.
func (d *sinkDraft) Open() (io.ReadCloser, error) {
	return nil, errSinkNoContent
}

var errSinkNoContent = errors.New("sink: the message content is not kept")

func (d *sinkDraft) Abort() error {
	d.buf = nil
	return nil
}

// savedEnvelope is DIR/<id>.json.
type savedEnvelope struct {
	ID         string    `json:"id"`
	From       string    `json:"from"`             // "" for the null sender
	To         []string  `json:"to"`               // recipients in order
	Notify     []string  `json:"notify,omitempty"` // per recipient (parallel to To), "" if not given
	ORCPT      []string  `json:"orcpt,omitempty"`  // per recipient (parallel to To), "" if not given
	Size       int64     `json:"size,omitempty"`   // SIZE= declared
	Body       string    `json:"body,omitempty"`
	SMTPUTF8   bool      `json:"smtputf8,omitempty"`
	Ret        string    `json:"ret,omitempty"`
	EnvID      string    `json:"envid,omitempty"`
	ClientIP   string    `json:"client_ip"`
	ClientHELO string    `json:"client_helo"`
	AuthUser   string    `json:"auth_user,omitempty"`
	TLS        bool      `json:"tls"`
	Received   time.Time `json:"received"`
}

func newSavedEnvelope(id string, env *envelope.Envelope) savedEnvelope {
	s := savedEnvelope{
		ID: id, From: env.Sender.String(), To: []string{},
		Size: env.Size, Body: string(env.Body), SMTPUTF8: env.SMTPUTF8, Ret: string(env.Ret), EnvID: env.EnvID,
		ClientIP: env.ClientIP, ClientHELO: env.ClientHELO, AuthUser: env.AuthUser, TLS: env.TLS, Received: env.Received,
	}
	notify := make([]string, len(env.Recipients))
	orcpt := make([]string, len(env.Recipients))
	var anyNotify, anyORCPT bool
	for i, r := range env.Recipients {
		s.To = append(s.To, r.Address.String())
		notify[i], orcpt[i] = r.Notify.String(), r.ORCPT
		anyNotify = anyNotify || r.Notify != 0
		anyORCPT = anyORCPT || r.ORCPT != ""
	}
	if anyNotify {
		s.Notify = notify
	}
	if anyORCPT {
		s.ORCPT = orcpt
	}
	return s
}

// writeFileAtomic writes the parts to dir/name through a synced temporary
// file renamed into place.
func writeFileAtomic(dir, name string, parts ...[]byte) (err error) {
	f, err := os.CreateTemp(dir, ".tmp-"+name+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	for _, p := range parts {
		if _, err := f.Write(p); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// Interface guards.
var (
	_ hook.Dispatcher = sinkHooks{}
	_ smtp.Spool      = (*sinkSpool)(nil)
	_ smtp.Draft      = (*sinkDraft)(nil)
)

// dropListener hands out connections that close themselves mid-DATA.
type dropListener struct{ net.Listener }

func (l dropListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &dropConn{Conn: c}, nil
}

// dropConn closes the connection at the first read after the server has
// sent a 354 (start mail input): the client is cut off mid-DATA with no
// reply, as a crashing or overloaded remote server would.
type dropConn struct {
	net.Conn
	armed atomic.Bool
}

func (c *dropConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("354 ")) || bytes.Contains(p, []byte("\n354 ")) {
		c.armed.Store(true)
	}
	return c.Conn.Write(p)
}

func (c *dropConn) Read(p []byte) (int, error) {
	if c.armed.Load() {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}
