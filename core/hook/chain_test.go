package hook_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hook/hooktest"
	"github.com/mailgate/gateway/sdk"
)

// staged is a Fixed handler that declares its stages.
type staged struct {
	*hooktest.Fixed
	stages []sdk.Stage
}

func (s staged) Stages() []sdk.Stage { return s.stages }

var _ hook.Stager = staged{}

func TestStageFiltering(t *testing.T) {
	rcptOnly := staged{&hooktest.Fixed{HandlerName: "rcpt-only"}, []sdk.Stage{sdk.StageRcpt}}
	dataByEntry := &hooktest.Fixed{HandlerName: "data-by-entry"}
	both := staged{&hooktest.Fixed{HandlerName: "both"}, []sdk.Stage{sdk.StageRcpt, sdk.StageData}} // entry narrows it to data
	none := staged{&hooktest.Fixed{HandlerName: "none"}, nil}
	all := &hooktest.Fixed{HandlerName: "all"}
	chain := hook.NewChain(nil,
		hook.Entry{Handler: rcptOnly},
		hook.Entry{Handler: dataByEntry, Stages: []sdk.Stage{sdk.StageData}},
		hook.Entry{Handler: both, Stages: []sdk.Stage{sdk.StageData, sdk.StageMail}},
		hook.Entry{Handler: none},
		hook.Entry{Handler: all},
	)
	for _, st := range []sdk.Stage{sdk.StageConnect, sdk.StageMail, sdk.StageRcpt, sdk.StageData, "future-stage"} {
		chain.Dispatch(context.Background(), &hook.Request{Stage: st})
	}
	tests := []struct {
		name string
		got  []sdk.Stage
		want []sdk.Stage
	}{
		{"rcpt-only", rcptOnly.Calls(), []sdk.Stage{sdk.StageRcpt}},
		{"data-by-entry", dataByEntry.Calls(), []sdk.Stage{sdk.StageData}},
		{"both", both.Calls(), []sdk.Stage{sdk.StageData}},
		{"none", none.Calls(), nil},
		{"all", all.Calls(), []sdk.Stage{sdk.StageConnect, sdk.StageMail, sdk.StageRcpt, sdk.StageData, "future-stage"}},
	}
	for _, tt := range tests {
		if !slices.Equal(tt.got, tt.want) {
			t.Errorf("%s called at %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestSkip(t *testing.T) {
	skipper := &hooktest.Fixed{HandlerName: "skipper", Effects: sdk.Effects{Skip: []string{"b"}}}
	a := &hooktest.Fixed{HandlerName: "a"}
	b := fixed("b", sdk.StageRcpt, sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "b says no"))
	c := &hooktest.Fixed{HandlerName: "c"}

	t.Run("effects skip later handlers", func(t *testing.T) {
		chain := hook.NewChain(nil, hook.Entry{Handler: a}, hook.Entry{Handler: skipper}, hook.Entry{Handler: b}, hook.Entry{Handler: c})
		res := chain.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
		if res.Decision.Verdict != sdk.Continue || len(b.Calls()) != 0 || len(c.Calls()) != 1 {
			t.Fatalf("got %+v, b calls %d, c calls %d; want continue, 0, 1", res, len(b.Calls()), len(c.Calls()))
		}
		if !slices.Equal(res.Effects.Skip, []string{"b"}) {
			t.Errorf("Effects.Skip: got %q, want [b] for the caller to carry", res.Effects.Skip)
		}
	})
	t.Run("request skip", func(t *testing.T) {
		skip := make([]string, 1, 4) // spare capacity: the chain must not write into it
		skip[0] = "a"
		chain := hook.NewChain(nil, hook.Entry{Handler: a}, hook.Entry{Handler: skipper}, hook.Entry{Handler: c})
		before := len(a.Calls())
		chain.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt, Skip: skip})
		if got := len(a.Calls()) - before; got != 0 {
			t.Errorf("a called %d times though skipped by the request", got)
		}
		if got := skip[:cap(skip)][1]; got != "" {
			t.Errorf("the request's Skip was appended to in place: %q", got)
		}
	})
}

func TestLive(t *testing.T) {
	var zero hook.Live
	if res := zero.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt}); res.Decision.Verdict != sdk.Continue {
		t.Fatalf("zero Live: got %+v, want continue", res)
	}
	reject := hook.NewChain(nil, hook.Entry{Handler: fixed("r", sdk.StageRcpt, sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "no"))})
	accept := hook.NewChain(nil, hook.Entry{Handler: fixed("a", sdk.StageRcpt, sdk.AcceptDecision())})
	live := hook.NewLive(reject)
	if got := live.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt}).Handler; got != "r" {
		t.Fatalf("before swap: decided by %q, want r", got)
	}
	if old := live.Swap(accept); old != reject {
		t.Errorf("Swap returned %p, want the reject chain %p", old, reject)
	}
	if got := live.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt}).Handler; got != "a" {
		t.Fatalf("after swap: decided by %q, want a", got)
	}
	if live.Chain() != accept {
		t.Errorf("Chain() is not the swapped-in chain")
	}
}

// TestLiveSwapUnderLoad dispatches from many goroutines while swapping:
// every answer comes whole from one chain or the other (run with -race).
func TestLiveSwapUnderLoad(t *testing.T) {
	chains := []*hook.Chain{
		hook.NewChain(nil, hook.Entry{Handler: fixed("r", sdk.StageRcpt, sdk.RejectDecision(550, sdk.EnhancedCode{5, 7, 1}, "no"))}),
		hook.NewChain(nil, hook.Entry{Handler: fixed("a", sdk.StageRcpt, sdk.AcceptDecision())}),
	}
	live := hook.NewLive(chains[0])
	var (
		stop atomic.Bool
		bad  atomic.Int64
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				res := live.Dispatch(context.Background(), &hook.Request{Stage: sdk.StageRcpt})
				switch {
				case res.Handler == "r" && res.Decision.Verdict == sdk.Reject:
				case res.Handler == "a" && res.Decision.Verdict == sdk.Accept:
				default:
					bad.Add(1)
				}
			}
		}()
	}
	for i := range 200 {
		live.Swap(chains[i%2])
	}
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d dispatches answered with a mixed or empty result", n)
	}
}

// BenchmarkDispatchStageFiltered dispatches rcpt on a chain of eight
// handlers of which one declares rcpt: the others are never looked at.
func BenchmarkDispatchStageFiltered(b *testing.B) {
	var entries []hook.Entry
	for range 7 {
		entries = append(entries, hook.Entry{Handler: staged{&hooktest.Fixed{HandlerName: "data"}, []sdk.Stage{sdk.StageData}}})
	}
	entries = append(entries, hook.Entry{Handler: hooktest.Func{HandlerName: "rcpt", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
		return sdk.Decision{}, sdk.Effects{}, nil
	}}})
	live := hook.NewLive(hook.NewChain(nil, entries...))
	req := &hook.Request{Stage: sdk.StageRcpt}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		live.Dispatch(ctx, req)
	}
}

// BenchmarkDispatchTimeout is the chain's own cost around one call: a
// handler with a timeout that accepts without looking at anything, under
// a cancellable parent (as a session's context is).
func BenchmarkDispatchTimeout(b *testing.B) {
	h := hooktest.Func{HandlerName: "accept", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
		return sdk.AcceptDecision(), sdk.Effects{}, nil
	}}
	benchDispatch(b, h)
}

// benchDispatch dispatches rcpt to h, under a 1 s timeout and a
// cancellable parent, b.N times; h must accept.
func benchDispatch(b *testing.B, h hook.Handler) {
	chain := hook.NewChain(nil, hook.Entry{Handler: h, Timeout: time.Second})
	req := &hook.Request{Stage: sdk.StageRcpt}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if res := chain.Dispatch(ctx, req); res.Decision.Verdict != sdk.Accept {
			b.Fatalf("Dispatch = %+v", res)
		}
	}
}

// TestRuns checks that a chain and a Live tell which stages have
// handlers: a handler's declared stages and its entry's stage list both
// count, and a chain without handlers runs nothing.
func TestRuns(t *testing.T) {
	rcpt := staged{&hooktest.Fixed{HandlerName: "rcpt"}, []sdk.Stage{sdk.StageRcpt, sdk.StageData}}
	chain := hook.NewChain(nil, hook.Entry{Handler: rcpt, Stages: []sdk.Stage{sdk.StageRcpt}})
	for stage, want := range map[sdk.Stage]bool{sdk.StageRcpt: true, sdk.StageData: false, sdk.StageCommand: false, "other": false} {
		if got := chain.Runs(stage); got != want {
			t.Errorf("Runs(%s) = %v, want %v", stage, got, want)
		}
	}
	all := hook.NewChain(nil, hook.Entry{Handler: &hooktest.Fixed{HandlerName: "all"}})
	if !all.Runs(sdk.StageCommand) || !all.Runs("other") {
		t.Errorf("a handler without stages does not run at every stage")
	}
	var none *hook.Chain
	live := hook.NewLive(none)
	if none.Runs(sdk.StageRcpt) || live.Runs(sdk.StageRcpt) {
		t.Errorf("an empty chain runs rcpt")
	}
	live.Swap(chain)
	if !live.Runs(sdk.StageRcpt) || live.Runs(sdk.StageData) {
		t.Errorf("Live does not follow its chain")
	}
}

// BenchmarkDispatchTimeoutWaits is BenchmarkDispatchTimeout with a
// handler that waits on its ctx's Done as a plugin call does (the call
// channel selects on it while the reply comes, and registers a
// context.AfterFunc to interrupt its read): the timer and the parent's
// child that the deadline then makes.
func BenchmarkDispatchTimeoutWaits(b *testing.B) {
	h := hooktest.Func{HandlerName: "accept", F: func(ctx context.Context, r *hook.Request) (sdk.Decision, sdk.Effects, error) {
		stop := context.AfterFunc(ctx, func() {})
		defer stop()
		select {
		case <-ctx.Done():
			return sdk.Decision{}, sdk.Effects{}, ctx.Err()
		default:
		}
		return sdk.AcceptDecision(), sdk.Effects{}, nil
	}}
	benchDispatch(b, h)
}
