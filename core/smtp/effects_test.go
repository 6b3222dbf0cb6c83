package smtp_test

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
	"github.com/mailgate/gateway/core/smtp/smtptest"
	"github.com/mailgate/gateway/sdk"
)

// dataEffects answers the data stage with eff (Continue), and records what
// the handler read of the message through req.Message.
type dataEffects struct {
	eff sdk.Effects

	mu     sync.Mutex
	header []sdk.HeaderField
	body   string
	first  string // Body(5)
	size   int64
	err    error
}

func (h *dataEffects) Name() string { return "effects" }

func (h *dataEffects) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	if req.Stage != sdk.StageData {
		if req.Message != nil {
			h.mu.Lock()
			h.err = io.ErrUnexpectedEOF // any error: a message outside data
			h.mu.Unlock()
		}
		return sdk.Decision{}, sdk.Effects{}, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := req.Message
	h.size = m.Size()
	var err error
	if h.header, err = m.Header(); err != nil {
		h.err = err
	}
	b, err := m.Body(0)
	if err != nil {
		h.err = err
	}
	h.body = string(b)
	b, _ = m.Body(5)
	h.first = string(b)
	return sdk.Decision{}, h.eff, nil
}

func startWith(t *testing.T, h hook.Handler, mod func(*smtp.Options)) (string, *smtptest.MemorySpool) {
	t.Helper()
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: h})
		if mod != nil {
			mod(o)
		}
	})
	return addr, spool
}

// received is the Received field the base server writes for one recipient.
func received(id, rcpt string, at time.Time) string {
	return "Received: from client.test ([127.0.0.1])\r\n" +
		"\tby mx.test (gateway) with ESMTP id " + id + "\r\n" +
		"\tfor <" + rcpt + ">; " + at.Format(time.RFC1123Z) + "\r\n"
}

const effectsMessage = `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: hello
		C: X-Spam-Flag: YES
		C: To: b@example.org
		C: x-spam-flag: maybe
		C:  folded
		C: DKIM-Signature: v=1
		C:
		C: Body line
		C: X-Spam-Flag: in the body
		C: .
`

func TestDataHookReadsMessage(t *testing.T) {
	h := &dataEffects{}
	addr, spool := startWith(t, h, nil)
	smtptest.Run(t, addr, hello+effectsMessage+`
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	wantMessages(t, spool, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		t.Fatalf("the hook's read failed: %v", h.err)
	}
	want := []sdk.HeaderField{
		{Name: "Subject", Value: "hello"},
		{Name: "X-Spam-Flag", Value: "YES"},
		{Name: "To", Value: "b@example.org"},
		{Name: "x-spam-flag", Value: "maybe folded"},
		{Name: "DKIM-Signature", Value: "v=1"},
	}
	if diff := cmp.Diff(want, h.header); diff != "" {
		t.Errorf("Header() (-want +got):\n%s", diff)
	}
	if want := "Body line\r\nX-Spam-Flag: in the body\r\n"; h.body != want {
		t.Errorf("Body(0) = %q; want %q", h.body, want)
	}
	if h.first != "Body " {
		t.Errorf("Body(5) = %q; want %q", h.first, "Body ")
	}
	content := "Subject: hello\r\nX-Spam-Flag: YES\r\nTo: b@example.org\r\nx-spam-flag: maybe\r\n folded\r\n" +
		"DKIM-Signature: v=1\r\n\r\nBody line\r\nX-Spam-Flag: in the body\r\n"
	if h.size != int64(len(content)) {
		t.Errorf("Size() = %d; want %d", h.size, len(content))
	}
}

func TestDataRemoveAndAddHeaders(t *testing.T) {
	h := &dataEffects{eff: sdk.Effects{
		RemoveHeaders: []string{"X-SPAM-FLAG"},
		AddHeaders:    []sdk.HeaderField{{Name: "X-Scanned", Value: "clean"}},
	}}
	addr, spool := startWith(t, h, nil)
	// The content goes to a new draft: its ID is the one reported.
	smtptest.Run(t, addr, hello+effectsMessage+`
		S: 250 2.0.0 Ok: queued as M0002
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	m := wantMessages(t, spool, 1)[0]
	want := received("M0002", "b@example.org", m.Envelope.Received) +
		"X-Scanned: clean\r\n" +
		"Subject: hello\r\nTo: b@example.org\r\nDKIM-Signature: v=1\r\n\r\n" +
		"Body line\r\nX-Spam-Flag: in the body\r\n"
	if got := string(m.Data()); got != want {
		t.Errorf("spooled:\ngot  %q\nwant %q", got, want)
	}
	if m.ID != "M0002" {
		t.Errorf("ID %s; want M0002", m.ID)
	}
	if n := spool.Aborted(); n != 1 {
		t.Errorf("%d drafts aborted; want 1 (the received one)", n)
	}
}

func TestDataAddHeadersOnlyKeepsTheDraft(t *testing.T) {
	h := &dataEffects{eff: sdk.Effects{AddHeaders: []sdk.HeaderField{{Name: "X-Scanned", Value: "clean"}}}}
	addr, spool := startWith(t, h, nil)
	smtptest.Run(t, addr, hello+effectsMessage+`
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	m := wantMessages(t, spool, 1)[0]
	if want := received("M0001", "b@example.org", m.Envelope.Received) + "X-Scanned: clean\r\n"; string(m.Header) != want {
		t.Errorf("header:\ngot  %q\nwant %q", m.Header, want)
	}
	if !strings.HasPrefix(string(m.Body), "Subject: hello\r\nX-Spam-Flag: YES\r\n") {
		t.Errorf("body changed: %q", m.Body)
	}
	if n := spool.Aborted(); n != 0 {
		t.Errorf("%d drafts aborted; want 0", n)
	}
}

func TestDataBodyReplacement(t *testing.T) {
	tests := []struct {
		name string
		eff  sdk.Effects
		want string // the content after the Received field
	}{
		{
			name: "bare LF becomes CRLF",
			eff:  sdk.Effects{Body: []byte("Subject: translated\nX-Old: 1\n\nnew body\nsecond line\n")},
			want: "Subject: translated\r\nX-Old: 1\r\n\r\nnew body\r\nsecond line\r\n",
		},
		{
			name: "then RemoveHeaders and AddHeaders",
			eff: sdk.Effects{
				Body:          []byte("Subject: translated\r\nX-Old: 1\r\n\r\nnew body\r\n"),
				RemoveHeaders: []string{"x-old"},
				AddHeaders:    []sdk.HeaderField{{Name: "X-Translated", Value: "yes"}},
			},
			want: "X-Translated: yes\r\nSubject: translated\r\n\r\nnew body\r\n",
		},
		{
			name: "a last line break is added",
			eff:  sdk.Effects{Body: []byte("Subject: x\r\n\r\nno line break")},
			want: "Subject: x\r\n\r\nno line break\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &dataEffects{eff: tt.eff}
			addr, spool := startWith(t, h, nil)
			smtptest.Run(t, addr, hello+effectsMessage+`
				S: 250 2.0.0 Ok: queued as M0002
				C: QUIT
				S: 221 2.0.0 Bye
				EOF
			`)
			m := wantMessages(t, spool, 1)[0]
			want := received("M0002", "b@example.org", m.Envelope.Received) + tt.want
			if got := string(m.Data()); got != want {
				t.Errorf("spooled:\ngot  %q\nwant %q", got, want)
			}
		})
	}
}

func TestDataBodyTooBig(t *testing.T) {
	h := &dataEffects{eff: sdk.Effects{Body: []byte("Subject: x\r\n\r\n" + strings.Repeat("y", 10240) + "\r\n")}}
	addr, spool := startWith(t, h, nil) // max_message_size 10240
	smtptest.Run(t, addr, hello+effectsMessage+`
		S: 552 5.3.4 Message too big
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	wantMessages(t, spool, 0)
	if n := spool.Aborted(); n != 2 {
		t.Errorf("%d drafts aborted; want 2 (the received one and the rewrite)", n)
	}
}

func TestDataSenderAndRecipients(t *testing.T) {
	h := &dataEffects{eff: sdk.Effects{
		Sender: &sdk.Address{Local: "SRS0=ab=cd=example.net=a", Domain: "example.org"},
		Recipients: []sdk.Address{
			{Local: "member1", Domain: "example.com"},
			{Local: "b", Domain: "EXAMPLE.ORG"}, // was a recipient: keeps its DSN parameters
			{Local: "member1", Domain: "example.com"},
		},
	}}
	addr, spool := startWith(t, h, nil)
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.org
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: Subject: list
		C:
		C: hi
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	m := wantMessages(t, spool, 1)[0]
	if got, want := m.Envelope.Sender.String(), "SRS0=ab=cd=example.net=a@example.org"; got != want {
		t.Errorf("sender %q; want %q", got, want)
	}
	want := []envelope.Recipient{
		{Address: envelope.Address{Local: "member1", Domain: "example.com"}},
		{Address: envelope.Address{Local: "b", Domain: "EXAMPLE.ORG"},
			Notify: envelope.NotifySuccess | envelope.NotifyFailure, ORCPT: "rfc822;b@example.org"},
	}
	if diff := cmp.Diff(want, m.Envelope.Recipients); diff != "" {
		t.Errorf("recipients (-want +got):\n%s", diff)
	}
	// The trace field names the recipient the client gave.
	if want := received("M0001", "b@example.org", m.Envelope.Received); string(m.Header) != want {
		t.Errorf("header:\ngot  %q\nwant %q", m.Header, want)
	}
}

// TestDataBadEnvelopeEffect: an address a data hook gives that would not
// pass on the wire is the handler's failure: its on_error (defer by
// default), nothing spooled.
func TestDataBadEnvelopeEffect(t *testing.T) {
	for _, tc := range []struct {
		name string
		eff  sdk.Effects
	}{
		{"recipient without domain", sdk.Effects{Recipients: []sdk.Address{{Local: "x"}}}},
		{"null recipient", sdk.Effects{Recipients: []sdk.Address{{}}}},
		{"bad sender", sdk.Effects{Sender: &sdk.Address{Local: "a b", Domain: "example.org"}}},
		{"UTF-8 without SMTPUTF8", sdk.Effects{Recipients: []sdk.Address{{Local: "jörg", Domain: "example.org"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, spool := startWith(t, &dataEffects{eff: tc.eff}, nil)
			smtptest.Run(t, addr, hello+effectsMessage+`
				S: 451 4.3.0 Temporary local problem, please try again later
				C: QUIT
				S: 221 2.0.0 Bye
				EOF
			`)
			wantMessages(t, spool, 0)
		})
	}
}

func TestDataNullSenderEffect(t *testing.T) {
	addr, spool := startWith(t, &dataEffects{eff: sdk.Effects{Sender: &sdk.Address{}}}, nil)
	smtptest.Run(t, addr, hello+effectsMessage+`
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	if m := wantMessages(t, spool, 1)[0]; !m.Envelope.Sender.IsNull() {
		t.Errorf("sender %q; want <>", m.Envelope.Sender.String())
	}
}

func TestBDATRemoveHeaders(t *testing.T) {
	h := &dataEffects{eff: sdk.Effects{RemoveHeaders: []string{"x-drop"}}}
	addr, spool := startWith(t, h, nil)
	c := smtptest.Dial(t, addr)
	defer c.Close()
	c.Run(hello + `
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
	`)
	c.Send([]byte("BDAT 16\r\nX-Drop: 1\r\nA: 2\r"))
	c.Run("S: 250 2.0.0 16 octets received\n")
	c.Send([]byte("BDAT 7 LAST\r\n\n\r\nbody"))
	c.Run(`
		S: 250 2.0.0 Ok: queued as M0002
		C: QUIT
		S: 221 2.0.0 Bye
	`)
	m := wantMessages(t, spool, 1)[0]
	if got, want := string(m.Body), "A: 2\r\n\r\nbody"; got != want {
		t.Errorf("body %q; want %q", got, want)
	}
}

// queueSpool is a core/queue spool as the server's Spool.
type queueSpool struct{ *queue.Spool }

func (q queueSpool) Create(ctx context.Context) (smtp.Draft, error) {
	d, err := q.Spool.Create(ctx)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// TestDataRewriteLarge sends 1 MiB, which the queue spills to a file, and
// has the hook read it and remove fields: the content streams from the
// received draft's file to the new draft's, and arrives exact.
func TestDataRewriteLarge(t *testing.T) {
	dir := t.TempDir()
	qs, err := queue.Open(dir, queue.Options{SpillThreshold: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qs.Close() })
	h := &dataEffects{eff: sdk.Effects{RemoveHeaders: []string{"X-Remove"}}}
	addr, _ := startWith(t, h, func(o *smtp.Options) {
		o.Spool = queueSpool{qs}
		o.Listener.MaxMessageSize = 2 << 20
	})

	line := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n" // 66 bytes
	body := strings.Repeat(line, (1<<20)/len(line))
	msg := "X-Remove: one\r\nSubject: big\r\nX-Remove: two\r\n continued\r\nX-Keep: yes\r\n\r\n" + body

	ctx := context.Background()
	c, err := smtp.Dial(ctx, addr, smtp.ClientOptions{LocalName: "client.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	env := &envelope.Envelope{
		Sender:     envelope.Address{Local: "a", Domain: "example.net"},
		Recipients: []envelope.Recipient{{Address: envelope.Address{Local: "b", Domain: "example.org"}}},
	}
	res, err := c.Send(ctx, env, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	c.Quit(ctx)

	h.mu.Lock()
	if h.err != nil || h.size != int64(len(msg)) || h.first != "01234" || h.body != body {
		t.Errorf("the hook read: err %v, size %d (want %d), Body(5) %q, Body(0) %d bytes (want %d)",
			h.err, h.size, len(msg), h.first, len(h.body), len(body))
	}
	h.mu.Unlock()

	rc, err := qs.Body(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: big\r\nX-Keep: yes\r\n\r\n" + body
	i := bytes.Index(got, []byte("Subject: big\r\n"))
	if i < 0 || !strings.HasPrefix(string(got), "Received: ") || !strings.Contains(string(got[:i]), " id "+res.ID+"\r\n") {
		t.Fatalf("spooled message does not start with our Received field: %.300q", got)
	}
	if string(got[i:]) != want {
		t.Errorf("spooled content differs: %d bytes, want %d", len(got[i:]), len(want))
	}
	// The received draft's file is gone.
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if strings.HasSuffix(p, ".tmp") {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

func TestEXPNAndVRFYHook(t *testing.T) {
	addr, _, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hooks(func(req *hook.Request) (sdk.Decision, sdk.Effects) {
			if req.Stage != sdk.StageCommand {
				return sdk.Decision{}, sdk.Effects{}
			}
			switch req.Command + " " + req.Arg {
			case "EXPN staff":
				return sdk.AcceptDecision(), sdk.Effects{ReplyLines: []string{
					"Alice <alice@example.test>",
					"Bob <bob@example.test>",
					"Carol \x07<carol@example.test>",
				}}
			case "VRFY alice":
				return sdk.AcceptDecision(), sdk.Effects{ReplyLines: []string{"Alice <alice@example.test>"}}
			case "VRFY nobody", "EXPN secret":
				return sdk.Decision{Verdict: sdk.Reject}, sdk.Effects{}
			case "EXPN empty":
				return sdk.AcceptDecision(), sdk.Effects{}
			}
			return sdk.Decision{}, sdk.Effects{}
		})
	})
	smtptest.Run(t, addr, hello+`
		C: EXPN staff
		S: 250-2.1.5 Alice <alice@example.test>
		S: 250-2.1.5 Bob <bob@example.test>
		S: 250 2.1.5 Carol ?<carol@example.test>
		C: VRFY alice
		S: 250 2.1.5 Alice <alice@example.test>
		C: VRFY nobody
		S: 554 5.7.1 Rejected by policy
		C: EXPN secret
		S: 554 5.7.1 Rejected by policy
		C: VRFY someone
		S: 252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery
		C: EXPN other
		S: 502 5.5.1 EXPN not available
		C: EXPN empty
		S: 502 5.5.1 EXPN not available
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
}

// recorder records the stages (and command verbs) it is called at.
type recorder struct {
	name  string
	mu    sync.Mutex
	calls []string
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	s := string(req.Stage)
	if req.Stage == sdk.StageCommand {
		s += ":" + req.Command
	}
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
	return sdk.Decision{}, sdk.Effects{}, nil
}

func TestSkipLastsForTheTransaction(t *testing.T) {
	skipper := hooktestFunc("a", func(req *hook.Request) sdk.Effects {
		if req.Stage == sdk.StageRcpt && req.Rcpt.Address.Local == "skip" {
			return sdk.Effects{Skip: []string{"b"}}
		}
		return sdk.Effects{}
	})
	b := &recorder{name: "b"}
	addr, spool, srv := start(t, func(o *smtp.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: skipper}, hook.Entry{Handler: b})
	})
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<skip@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<b@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0002
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	wantMessages(t, spool, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx) // the disconnect stage has run
	want := []string{"connect", "command:EHLO", "helo",
		"command:MAIL", "mail", "command:RCPT", // rcpt: skipped from a's answer on
		"command:MAIL", "mail", "command:RCPT", "rcpt", "command:DATA", "data",
		"command:QUIT", "disconnect"}
	b.mu.Lock()
	defer b.mu.Unlock()
	if diff := cmp.Diff(want, b.calls); diff != "" {
		t.Errorf("b's calls (-want +got):\n%s", diff)
	}
}

func hooktestFunc(name string, f func(req *hook.Request) sdk.Effects) hook.Handler {
	return hooktest.Func{HandlerName: name, F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		return sdk.Decision{}, f(req), nil
	}}
}

// TestRcptRequestsStayAsHanded checks that the request a rcpt hook is
// handed is its own and never changed afterwards: a hook that keeps the
// requests of two RCPT commands finds each with its own recipient, and
// the first with its notify parameter, after the transaction has gone on.
func TestRcptRequestsStayAsHanded(t *testing.T) {
	var mu sync.Mutex
	var kept []*hook.Request
	keeper := hooktestFunc("keeper", func(req *hook.Request) sdk.Effects {
		if req.Stage == sdk.StageRcpt {
			mu.Lock()
			kept = append(kept, req)
			mu.Unlock()
		}
		return sdk.Effects{}
	})
	addr, spool, _ := start(t, func(o *smtp.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: keeper, Stages: []sdk.Stage{sdk.StageRcpt}})
	})
	smtptest.Run(t, addr, hello+`
		C: MAIL FROM:<a@example.net>
		S: 250 2.1.0 Ok
		C: RCPT TO:<first@example.org> NOTIFY=NEVER
		S: 250 2.1.5 Ok
		C: RCPT TO:<second@example.org>
		S: 250 2.1.5 Ok
		C: DATA
		S: 354 End data with <CR><LF>.<CR><LF>
		C: x
		C: .
		S: 250 2.0.0 Ok: queued as M0001
		C: QUIT
		S: 221 2.0.0 Bye
		EOF
	`)
	wantMessages(t, spool, 1)
	mu.Lock()
	defer mu.Unlock()
	if len(kept) != 2 {
		t.Fatalf("%d rcpt requests kept, want 2", len(kept))
	}
	for i, want := range []envelope.Recipient{
		{Address: envelope.Address{Local: "first", Domain: "example.org"}, Notify: envelope.NotifyNever},
		{Address: envelope.Address{Local: "second", Domain: "example.org"}},
	} {
		if r := kept[i]; r.Stage != sdk.StageRcpt || r.Rcpt == nil || !cmp.Equal(*r.Rcpt, want) {
			t.Errorf("request %d: stage %s, rcpt %+v; want rcpt %+v", i, r.Stage, r.Rcpt, want)
		}
	}
}
