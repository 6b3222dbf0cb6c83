package delivery_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// predeliveryEffects is a handler that answers predelivery for
// example.net with Continue and eff.
func predeliveryEffects(eff sdk.Effects) hook.Entry {
	return hook.Entry{Handler: hooktest.Func{HandlerName: "effects", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
		if req.Stage == sdk.StagePredelivery && req.Arg == "example.net" {
			return sdk.Decision{}, eff, nil
		}
		return sdk.Decision{}, sdk.Effects{}, nil
	}}}
}

func TestEnginePredeliveryEffects(t *testing.T) {
	tests := []struct {
		name   string
		eff    sdk.Effects
		sender string
		body   string
		rcpts  []string // the job's; nil = bob@example.net
	}{
		{
			name:   "none",
			sender: engSender,
			body:   engTrace + engBody,
		},
		{
			name: "remove and add headers",
			eff: sdk.Effects{
				RemoveHeaders: []string{"to", "X-Absent"},
				AddHeaders:    []sdk.HeaderField{{Name: "X-Route", Value: "internal"}, {Name: "X-Two", Value: "2"}},
			},
			sender: engSender,
			body: "X-Route: internal\r\nX-Two: 2\r\n" + engTrace +
				"From: Alice <alice@example.com>\r\nSubject: lunch\r\n\r\nFriday?\r\n",
		},
		{
			name:   "sender",
			eff:    sdk.Effects{Sender: &sdk.Address{Local: "SRS0=x=y=example.com=alice", Domain: "example.org"}},
			sender: "SRS0=x=y=example.com=alice@example.org",
			body:   engTrace + engBody,
		},
		{
			name:   "null sender",
			eff:    sdk.Effects{Sender: &sdk.Address{}},
			sender: "",
			body:   engTrace + engBody,
		},
		{
			name: "body, then headers",
			eff: sdk.Effects{
				Body:          []byte("Subject: traducido\nX-Internal: 1\n\nhola\n"),
				RemoveHeaders: []string{"x-internal"},
				AddHeaders:    []sdk.HeaderField{{Name: "X-Translated", Value: "es"}},
			},
			sender: engSender,
			body:   "X-Translated: es\r\nSubject: traducido\r\n\r\nhola\r\n",
		},
		{
			name:   "recipients",
			eff:    sdk.Effects{Recipients: []sdk.Address{{Local: "carol", Domain: "example.net"}}},
			sender: engSender,
			body:   engTrace + engBody,
			rcpts:  []string{"carol@example.net"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newEngHarness(t, func(o *delivery.Options) {
				o.Hooks = hook.NewChain(nil, predeliveryEffects(tt.eff))
			})
			h.start()
			id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
			h.waitOutcomes(1)

			calls := h.tr.Calls()
			if len(calls) != 1 {
				t.Fatalf("%d transport calls; want 1", len(calls))
			}
			c := calls[0]
			if got := string(c.Body); got != tt.body {
				t.Errorf("body the transport read:\ngot  %q\nwant %q", got, tt.body)
			}
			if c.Job.Size != int64(len(tt.body)) {
				t.Errorf("job size %d; want %d", c.Job.Size, len(tt.body))
			}
			if got := c.Job.Envelope.Sender.String(); got != tt.sender {
				t.Errorf("job sender %q; want %q", got, tt.sender)
			}
			want := tt.rcpts
			if want == nil {
				want = []string{"bob@example.net"}
			}
			if diff := cmp.Diff(want, c.Rcpts()); diff != "" {
				t.Errorf("job recipients (-want +got):\n%s", diff)
			}
			if msgs := h.messages(); len(msgs) != 0 {
				t.Errorf("message %s still queued", id)
			}
		})
	}
}

func TestEnginePredeliveryReadsMessage(t *testing.T) {
	var mu sync.Mutex
	var header []sdk.HeaderField
	var body string
	var size int64
	var readErr error
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: hooktest.Func{HandlerName: "reader", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
			if req.Stage != sdk.StagePredelivery || req.Arg != "example.net" {
				return sdk.Decision{}, sdk.Effects{}, nil
			}
			mu.Lock()
			defer mu.Unlock()
			size = req.Message.Size()
			var err error
			if header, err = req.Message.Header(); err != nil {
				readErr = err
			}
			b, err := req.Message.Body(0)
			if err != nil {
				readErr = err
			}
			body = string(b)
			return sdk.Decision{}, sdk.Effects{}, nil
		}}})
	})
	h.start()
	h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)

	mu.Lock()
	defer mu.Unlock()
	if readErr != nil {
		t.Fatalf("reading the message: %v", readErr)
	}
	want := []sdk.HeaderField{
		{Name: "Received", Value: "from client.example.com by mx.example.org; Sun, 1 Mar 2026 12:00:00 +0000"},
		{Name: "From", Value: "Alice <alice@example.com>"},
		{Name: "To", Value: "Bob <bob@example.net>"},
		{Name: "Subject", Value: "lunch"},
	}
	if diff := cmp.Diff(want, header); diff != "" {
		t.Errorf("Header() (-want +got):\n%s", diff)
	}
	if body != "Friday?\r\n" {
		t.Errorf("Body(0) = %q; want %q", body, "Friday?\r\n")
	}
	if size != int64(len(engTrace+engBody)) {
		t.Errorf("Size() = %d; want %d", size, len(engTrace+engBody))
	}
}

// TestEnginePredeliveryLargeRewrite has a hook rewrite a message over the
// in-memory limit: the copy goes to a temporary file that exists while the
// transport reads it and is gone after the job.
func TestEnginePredeliveryLargeRewrite(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, predeliveryEffects(sdk.Effects{
			RemoveHeaders: []string{"Subject"},
			AddHeaders:    []sdk.HeaderField{{Name: "X-Big", Value: "yes"}},
		}))
	})
	var during []string
	h.tr.ScriptCall(func(ctx context.Context, job *delivery.Job) []delivery.Result {
		during, _ = filepath.Glob(filepath.Join(tmp, "gateway-predelivery-*"))
		return []delivery.Result{{Class: delivery.Delivered, Code: 250, Text: "ok"}}
	})
	h.start()
	line := strings.Repeat("x", 78) + "\r\n"
	content := "From: Alice <alice@example.com>\r\nSubject: big\r\n\r\n" + strings.Repeat(line, 5000) // 400 kB
	h.enqueueRaw(engSender, engRcpts("bob@example.net"), engTrace, content)
	h.waitOutcomes(1)

	c := h.tr.Calls()[0]
	want := "X-Big: yes\r\n" + engTrace + "From: Alice <alice@example.com>\r\n\r\n" + strings.Repeat(line, 5000)
	if string(c.Body) != want {
		t.Errorf("transport read %d bytes; want %d, the rewritten message", len(c.Body), len(want))
	}
	if c.Job.Size != int64(len(want)) {
		t.Errorf("job size %d; want %d", c.Job.Size, len(want))
	}
	if len(during) != 1 {
		t.Errorf("temporary files during the job: %v; want one", during)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("%d files left in the temporary folder after the job; want none", len(left))
	}
}

func TestEnginePredeliveryBadSender(t *testing.T) {
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, predeliveryEffects(sdk.Effects{Sender: &sdk.Address{Local: "two words", Domain: "example.org"}}))
	})
	h.start()
	id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
	h.waitOutcomes(1)
	if n := h.tr.NumCalls(); n != 0 {
		t.Errorf("%d transport calls; want none", n)
	}
	rs := h.get(id).Recipients[0]
	// The chain checks the sender: a bad one is the handler's failure,
	// its on_error (defer by default).
	if rs.Status != queue.Deferred || rs.LastReply != "451 4.3.0 Temporary local problem, please try again later" {
		t.Errorf("recipient %+v; want deferred with the on_error 451", rs)
	}
}

// TestEnginePredeliveryTLSRequired: the job's TLSOptional follows the
// content a predelivery hook leaves: removing "TLS-Required: No" puts the
// recipient's TLS policies back in force, adding it relaxes them, and
// REQUIRETLS overrides the field (RFC 8689 §4.1).
func TestEnginePredeliveryTLSRequired(t *testing.T) {
	for _, tc := range []struct {
		name       string
		header     string // extra header of the queued message
		optional   bool   // TLSOptional as queued
		requireTLS bool
		eff        sdk.Effects
		want       bool
	}{
		{"removed", "TLS-Required: No\r\n", true, false, sdk.Effects{RemoveHeaders: []string{"tls-required"}}, false},
		{"added", "", false, false, sdk.Effects{AddHeaders: []sdk.HeaderField{{Name: "TLS-Required", Value: "No"}}}, true},
		{"kept", "TLS-Required: No\r\n", true, false, sdk.Effects{RemoveHeaders: []string{"X-Other"}}, true},
		{"REQUIRETLS", "", false, true, sdk.Effects{AddHeaders: []sdk.HeaderField{{Name: "TLS-Required", Value: "No"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newEngHarness(t, func(o *delivery.Options) {
				o.Hooks = hook.NewChain(nil, predeliveryEffects(tc.eff))
			})
			h.editEnv = func(e *envelope.Envelope) { e.TLSOptional, e.RequireTLS = tc.optional, tc.requireTLS }
			h.start()
			h.enqueueRaw(engSender, []envelope.Recipient{engRcpt("bob@example.net", 0)}, engTrace, tc.header+engBody)
			h.waitOutcomes(1)
			calls := h.tr.Calls()
			if len(calls) != 1 {
				t.Fatalf("%d transport calls; want 1", len(calls))
			}
			if got := calls[0].Job.Envelope.TLSOptional; got != tc.want {
				t.Errorf("TLSOptional = %v, want %v", got, tc.want)
			}
		})
	}
}
