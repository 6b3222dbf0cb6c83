package hook_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/sdk"
)

func fixed(name string, stage sdk.Stage, d sdk.Decision) *hooktest.Fixed {
	return &hooktest.Fixed{HandlerName: name, At: map[sdk.Stage]sdk.Decision{stage: d}}
}

func TestEmptyChainContinues(t *testing.T) {
	for _, c := range []*hook.Chain{nil, hook.NewChain(nil)} {
		res := c.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
		if res.Decision.Verdict != sdk.Continue || res.Handler != "" {
			t.Errorf("empty chain: got %+v, want continue from no handler", res)
		}
	}
}

func TestFirstDecisionWins(t *testing.T) {
	a := fixed("a", sdk.StageRcpt, sdk.Decision{})
	b := fixed("b", sdk.StageRcpt, sdk.RejectDecision(550, sdk.EnhancedCode{5, 1, 1}, "no such user"))
	c := fixed("c", sdk.StageRcpt, sdk.AcceptDecision())
	chain := hook.NewChain(nil, hook.Entry{Handler: a}, hook.Entry{Handler: b}, hook.Entry{Handler: c})
	res := chain.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
	if res.Handler != "b" || res.Decision.Verdict != sdk.Reject || res.Decision.Code != 550 {
		t.Fatalf("got %+v, want reject 550 from b", res)
	}
	if got := len(c.Calls()); got != 0 {
		t.Errorf("c called %d times after b decided, want 0", got)
	}
	if got := len(a.Calls()); got != 1 {
		t.Errorf("a called %d times, want 1", got)
	}
}

func TestNotificationsRunEveryHandler(t *testing.T) {
	a := fixed("a", sdk.StageDelivered, sdk.RejectDecision(550, sdk.EnhancedCode{}, ""))
	b := fixed("b", sdk.StageDelivered, sdk.Decision{})
	chain := hook.NewChain(nil, hook.Entry{Handler: a}, hook.Entry{Handler: b})
	res := chain.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageDelivered})
	if res.Decision.Verdict != sdk.Continue || len(b.Calls()) != 1 {
		t.Fatalf("notification: got %+v and b calls %d, want continue and 1", res, len(b.Calls()))
	}
}

func TestMatchSkipsHandler(t *testing.T) {
	a := fixed("a", sdk.StageRcpt, sdk.RejectDecision(0, sdk.EnhancedCode{}, ""))
	chain := hook.NewChain(nil, hook.Entry{Handler: a, Match: func(r *hook.Request) bool { return r.Stage == sdk.StageMail }})
	res := chain.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
	if res.Decision.Verdict != sdk.Continue || len(a.Calls()) != 0 {
		t.Fatalf("got %+v with %d calls, want continue and 0 calls", res, len(a.Calls()))
	}
}

// TestOnError checks that an error, a panic and a timeout all take the one
// on_error path.
func TestOnError(t *testing.T) {
	failures := map[string]hook.Handler{
		"error": hooktest.Func{HandlerName: "h", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
			return sdk.Decision{}, sdk.Effects{}, errors.New("backend down")
		}},
		"panic": hooktest.Func{HandlerName: "h", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
			panic("boom")
		}},
		"timeout": hooktest.Func{HandlerName: "h", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
			<-ctx.Done()
			return sdk.AcceptDecision(), sdk.Effects{}, nil
		}},
	}
	policies := []struct {
		onError hook.OnError
		want    sdk.Decision
	}{
		{"", sdk.Decision{Verdict: sdk.Defer, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, please try again later"}},
		{hook.OnErrorDefer, sdk.Decision{Verdict: sdk.Defer, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, please try again later"}},
		{hook.OnErrorReject, sdk.Decision{Verdict: sdk.Reject, Code: 554, Enhanced: sdk.EnhancedCode{5, 3, 0}, Message: "Local processing error"}},
		{hook.OnErrorContinue, sdk.Decision{}},
	}
	for kind, h := range failures {
		for _, p := range policies {
			t.Run(kind+"/"+string(p.onError), func(t *testing.T) {
				chain := hook.NewChain(nil, hook.Entry{Handler: h, OnError: p.onError, Timeout: 20 * time.Millisecond})
				res := chain.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
				res.Decision.Reason = ""
				if diff := cmp.Diff(p.want, res.Decision); diff != "" {
					t.Errorf("decision (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestInvalidDecisionFallsBackToStageDefault(t *testing.T) {
	bad := fixed("bad", sdk.StageRcpt, sdk.Decision{Verdict: sdk.Reject, Code: 250, Message: "ok\r\nMAIL FROM:<>"})
	res := hook.NewChain(nil, hook.Entry{Handler: bad}).Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
	if res.Decision.Verdict != sdk.Reject || res.Decision.Code != 0 || res.Decision.Message != "" {
		t.Fatalf("got %+v, want a bare reject (stage default)", res.Decision)
	}
	r := hook.DefaultReply(sdk.StageRcpt, res.Decision)
	if r.Code != 550 || r.Enhanced != (sdk.EnhancedCode{5, 7, 1}) {
		t.Errorf("reply %+v, want 550 5.7.1", r)
	}
}

func TestEffectsMerge(t *testing.T) {
	a := &hooktest.Fixed{HandlerName: "a", Effects: sdk.Effects{
		AddHeaders: []sdk.HeaderField{{Name: "X-A", Value: "1"}},
		Notes:      map[string]string{"a/x": "1"},
	}}
	b := &hooktest.Fixed{HandlerName: "b",
		At: map[sdk.Stage]sdk.Decision{sdk.StageData: sdk.RejectDecision(554, sdk.EnhancedCode{5, 7, 1}, "spam")},
		Effects: sdk.Effects{
			AddHeaders: []sdk.HeaderField{{Name: "X-B", Value: "2"}},
			Notes:      map[string]string{"b/score": "9"},
		}}
	res := hook.NewChain(nil, hook.Entry{Handler: a}, hook.Entry{Handler: b}).Dispatch(context.Background(), &hook.Request{Stage: sdk.StageData})
	want := hook.Effects{
		AddHeaders: []sdk.HeaderField{{Name: "X-A", Value: "1"}, {Name: "X-B", Value: "2"}},
		Notes:      map[string]string{"a/x": "1", "b/score": "9"},
	}
	if diff := cmp.Diff(want, res.Effects); diff != "" {
		t.Errorf("effects (-want +got):\n%s", diff)
	}
}

// TestDefaultReply pins the stage × verdict table of STYLE.md §3.2.
func TestDefaultReply(t *testing.T) {
	type e = sdk.EnhancedCode
	tests := []struct {
		stage sdk.Stage
		d     sdk.Decision
		want  hook.Reply
	}{
		{sdk.StageConnect, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{554, e{5, 7, 1}, "Rejected by policy", true}},
		{sdk.StageConnect, sdk.Decision{Verdict: sdk.Defer}, hook.Reply{421, e{4, 7, 0}, "Try again later", true}},
		{sdk.StageConnect, sdk.Decision{Verdict: sdk.Drop}, hook.Reply{421, e{4, 7, 0}, "Closing connection", true}},
		{sdk.StageHelo, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{550, e{5, 7, 1}, "Rejected by policy", false}},
		{sdk.StageHelo, sdk.Decision{Verdict: sdk.Defer}, hook.Reply{451, e{4, 7, 1}, "Try again later", false}},
		{sdk.StageHelo, sdk.Decision{Verdict: sdk.Drop}, hook.Reply{421, e{4, 7, 0}, "Closing connection", true}},
		{sdk.StageMail, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{550, e{5, 7, 1}, "Rejected by policy", false}},
		{sdk.StageMail, sdk.Decision{Verdict: sdk.Defer}, hook.Reply{451, e{4, 7, 1}, "Try again later", false}},
		{sdk.StageRcpt, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{550, e{5, 7, 1}, "Rejected by policy", false}},
		{sdk.StageRcpt, sdk.Decision{Verdict: sdk.Defer, Disconnect: true}, hook.Reply{451, e{4, 7, 1}, "Try again later", true}},
		{sdk.StageCommand, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{554, e{5, 7, 1}, "Rejected by policy", false}},
		{sdk.StageData, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{554, e{5, 7, 1}, "Rejected by policy", false}},
		{sdk.StageData, sdk.Decision{Verdict: sdk.Defer}, hook.Reply{451, e{4, 7, 1}, "Try again later", false}},
		{sdk.StageAuth, sdk.Decision{Verdict: sdk.Reject}, hook.Reply{535, e{5, 7, 8}, "Authentication credentials invalid", false}},
		{sdk.StageAuth, sdk.Decision{Verdict: sdk.Defer}, hook.Reply{454, e{4, 7, 0}, "Temporary authentication failure", false}},
		{sdk.StageRcpt, sdk.RejectDecision(550, e{5, 1, 1}, "No such user"), hook.Reply{550, e{5, 1, 1}, "No such user", false}},
		{sdk.StageRcpt, sdk.RejectDecision(553, e{}, ""), hook.Reply{553, e{5, 7, 1}, "Rejected by policy", false}},
		{sdk.StageMail, sdk.DeferDecision(450, e{}, "Greylisted"), hook.Reply{450, e{4, 7, 1}, "Greylisted", false}},
	}
	for _, tt := range tests {
		t.Run(string(tt.stage)+"/"+tt.d.Verdict.String(), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, hook.DefaultReply(tt.stage, tt.d)); diff != "" {
				t.Errorf("DefaultReply (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNotesReachLaterHandlers: the notes a handler writes are in the
// request of the later handlers of the same dispatch, on top of those the
// caller passed; the caller's request is not changed, and the result
// carries only the notes of this dispatch.
func TestNotesReachLaterHandlers(t *testing.T) {
	var seen []map[string]string
	record := func(name string, write map[string]string) hook.Entry {
		return hook.Entry{Handler: hooktest.Func{HandlerName: name, F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
			seen = append(seen, r.Notes)
			return sdk.Decision{}, sdk.Effects{Notes: write}, nil
		}}}
	}
	chain := hook.NewChain(nil,
		record("a", map[string]string{"score": "1"}),
		record("b", map[string]string{"b/seen": "yes", "score": "2"}),
		record("c", nil))
	caller := map[string]string{"x/earlier": "0"}
	req := &hook.Request{Stage: sdk.StageRcpt, Notes: caller}
	res := chain.Dispatch(context.Background(), req)
	want := []map[string]string{
		{"x/earlier": "0"},
		{"x/earlier": "0", "a/score": "1"},
		{"x/earlier": "0", "a/score": "1", "b/seen": "yes", "b/score": "2"},
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("notes seen (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"a/score": "1", "b/seen": "yes", "b/score": "2"}, res.Effects.Notes); diff != "" {
		t.Errorf("result notes (-want +got):\n%s", diff)
	}
	if len(req.Notes) != 1 || len(caller) != 1 {
		t.Errorf("the caller's notes changed: request %v, map %v", req.Notes, caller)
	}
}

// TestOffStageEffectsWarn: an effect at a stage that does not take it is
// removed and logged at WARN with the handler's name and the stage; the
// rest of the answer stands.
func TestOffStageEffectsWarn(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := &hooktest.Fixed{HandlerName: "plugin.odd",
		At: map[sdk.Stage]sdk.Decision{sdk.StageRcpt: sdk.AcceptDecision()},
		Effects: sdk.Effects{
			Recipients: []sdk.Address{{Local: "a", Domain: "example.org"}},
			AddHeaders: []sdk.HeaderField{{Name: "X-Rcpt", Value: "1"}},
			Route:      &sdk.Route{Transport: "lmtp"},
		}}
	res := hook.NewChain(log, hook.Entry{Handler: h}).Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
	want := hook.Effects{Recipients: []envelope.Address{{Local: "a", Domain: "example.org"}}}
	if diff := cmp.Diff(want, res.Effects); diff != "" || res.Decision.Verdict != sdk.Accept {
		t.Errorf("verdict %s; effects (-want +got):\n%s", res.Decision.Verdict, diff)
	}
	got := logs.String()
	for _, w := range []string{"level=WARN", "stage=rcpt", "hook=plugin.odd", "effects=\"add_headers, route\""} {
		if !strings.Contains(got, w) {
			t.Errorf("log %q lacks %q", got, w)
		}
	}
}

// TestBadEffectIsAFailure: a malformed effect (here an address that would
// not pass on the wire) is the handler's failure: its on_error decision,
// and none of its effects.
func TestBadEffectIsAFailure(t *testing.T) {
	h := &hooktest.Fixed{HandlerName: "h",
		At: map[sdk.Stage]sdk.Decision{sdk.StageRcpt: sdk.AcceptDecision()},
		Effects: sdk.Effects{
			Recipients: []sdk.Address{{Local: "ok", Domain: "example.org"}, {Local: "bad address", Domain: "example.org"}},
			Notes:      map[string]string{"n": "1"},
		}}
	for _, p := range []hook.OnError{hook.OnErrorDefer, hook.OnErrorReject, hook.OnErrorContinue} {
		t.Run(string(p), func(t *testing.T) {
			res := hook.NewChain(nil, hook.Entry{Handler: h, OnError: p}).Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
			want := map[hook.OnError]sdk.Verdict{hook.OnErrorDefer: sdk.Defer, hook.OnErrorReject: sdk.Reject, hook.OnErrorContinue: sdk.Continue}[p]
			if res.Decision.Verdict != want || (want != sdk.Continue && !strings.Contains(res.Decision.Reason, "bad address")) {
				t.Errorf("decision %+v; want %s with the reason", res.Decision, want)
			}
			if diff := cmp.Diff(hook.Effects{}, res.Effects); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
		})
	}
}
