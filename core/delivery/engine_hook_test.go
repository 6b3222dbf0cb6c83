package delivery_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/delivery/deliverytest"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/sdk"
)

// engHookCall is one request a hook saw.
type engHookCall struct {
	Stage  sdk.Stage
	Arg    string
	Rcpt   string
	Sender string
}

func TestEnginePredeliveryHook(t *testing.T) {
	tests := []struct {
		name     string
		decision sdk.Decision
		effects  sdk.Effects
		// what becomes of bob@example.net
		status    queue.Status // queue.Delivered also for a drop (message then gone)
		reply     string
		smtpCalls int
		lmtpCalls int
		dsn       string // Action of the DSN, "" = none
		notified  sdk.Stage
	}{
		{name: "continue", decision: sdk.ContinueDecision(), status: queue.Delivered, smtpCalls: 1, notified: sdk.StageDelivered},
		{name: "accept with route", decision: sdk.AcceptDecision(),
			effects: sdk.Effects{Route: &sdk.Route{Transport: "lmtp", Via: "10.0.0.1:24"}},
			status:  queue.Delivered, lmtpCalls: 1, notified: sdk.StageDelivered},
		{name: "reject default", decision: sdk.Decision{Verdict: sdk.Reject},
			status: queue.Failed, reply: "550 5.7.1 Rejected by policy", dsn: "failed", notified: sdk.StageBounced},
		{name: "reject own code", decision: sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 0}, "not to them"),
			status: queue.Failed, reply: "554 5.7.0 not to them", dsn: "failed", notified: sdk.StageBounced},
		{name: "defer", decision: sdk.Decision{Verdict: sdk.Defer},
			status: queue.Deferred, reply: "451 4.7.1 Try again later", notified: sdk.StageDeferred},
		{name: "drop", decision: sdk.DropDecision(), status: queue.Delivered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var calls []engHookCall
			handler := hooktest.Func{HandlerName: "policy", F: func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
				c := engHookCall{Stage: req.Stage, Arg: req.Arg}
				if req.Rcpt != nil {
					c.Rcpt = req.Rcpt.Address.String()
				}
				if req.Envelope != nil {
					c.Sender = req.Envelope.Sender.String()
				}
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
				if req.Stage == sdk.StagePredelivery && req.Arg == "example.net" {
					return tt.decision, tt.effects, nil
				}
				return sdk.Decision{}, sdk.Effects{}, nil
			}}
			lmtp := &deliverytest.Transport{}
			h := newEngHarness(t, func(o *delivery.Options) {
				o.Hooks = hook.NewChain(nil, hook.Entry{Handler: handler})
				o.Transports["lmtp"] = lmtp
			})
			h.start()
			id := h.enqueue(engSender, engRcpt("bob@example.net", 0))
			h.waitOutcomes(1)
			if tt.dsn != "" {
				h.waitFor("the DSN", func() bool { return h.sink.NumCalls() == 1 })
			}

			if got := h.tr.NumCalls(); got != tt.smtpCalls {
				t.Errorf("smtp calls %d; want %d", got, tt.smtpCalls)
			}
			if got := lmtp.NumCalls(); got != tt.lmtpCalls {
				t.Errorf("lmtp calls %d; want %d", got, tt.lmtpCalls)
			}
			if tt.lmtpCalls > 0 {
				if r := lmtp.Calls()[0].Job.Route; r.Transport != "lmtp" || r.Via != "10.0.0.1:24" {
					t.Errorf("route %+v; want lmtp via 10.0.0.1:24", r)
				}
			}
			msgs := h.messages()
			if tt.status == queue.Deferred {
				if len(msgs) != 1 {
					t.Fatalf("spool has %d messages; want the deferred one", len(msgs))
				}
				if rs := h.get(id).Recipients[0]; rs.Status != tt.status || rs.LastReply != tt.reply {
					t.Errorf("recipient %+v; want %v %q", rs, tt.status, tt.reply)
				}
			} else if len(msgs) != 0 {
				t.Errorf("spool has %d messages; want none", len(msgs))
			}
			dsns := engDSNCalls(h.sink)
			switch {
			case tt.dsn == "" && len(dsns) != 0:
				t.Errorf("%d DSNs; want none", len(dsns))
			case tt.dsn != "":
				if len(dsns) != 1 {
					t.Fatalf("%d DSNs; want 1", len(dsns))
				}
				p := parseEngDSN(t, dsns[0].Body)
				if got := engRcptFields(p.Rcpts[0]); got["Action"] != tt.dsn || got["Diagnostic-Code"] != "smtp; "+tt.reply {
					t.Errorf("DSN fields %v; want Action %s and the reply %q", got, tt.dsn, tt.reply)
				}
			}

			// The hook saw predelivery for the domain, then the outcome.
			mu.Lock()
			var got []engHookCall
			for _, c := range calls {
				if c.Arg == "example.net" || c.Arg == "bob@example.net" {
					got = append(got, c)
				}
			}
			mu.Unlock()
			want := []engHookCall{{Stage: sdk.StagePredelivery, Arg: "example.net", Rcpt: "bob@example.net", Sender: engSender}}
			if tt.notified != "" {
				want = append(want, engHookCall{Stage: tt.notified, Arg: "bob@example.net", Rcpt: "bob@example.net", Sender: engSender})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("hook calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEngineNotificationsPerRecipient(t *testing.T) {
	fixed := &hooktest.Fixed{HandlerName: "watch"}
	h := newEngHarness(t, func(o *delivery.Options) {
		o.Hooks = hook.NewChain(nil, hook.Entry{Handler: fixed, Match: func(r *hook.Request) bool {
			return r.Envelope != nil && !r.Envelope.Sender.IsNull() // not the DSN's own delivery
		}})
	})
	h.tr.Script("b@one.test", deliverytest.Temp(451, sdk.EnhancedCode{4, 2, 2}, "full"))
	h.tr.Script("c@one.test", deliverytest.Perm(550, sdk.EnhancedCode{5, 1, 1}, "unknown"))
	h.start()
	h.enqueue(engSender, engRcpts("a@one.test", "b@one.test", "c@one.test")...)
	h.waitOutcomes(3)
	h.waitFor("the DSN", func() bool { return h.sink.NumCalls() == 1 })

	got := fixed.Calls()
	slices.Sort(got)
	want := []sdk.Stage{sdk.StageBounced, sdk.StageDeferred, sdk.StageDelivered, sdk.StagePredelivery}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
}
