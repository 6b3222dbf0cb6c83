// Package hooktest holds stub hook handlers for tests of the parts that run
// hooks (the SMTP server, the delivery engine, the chain itself).
package hooktest

import (
	"context"
	"sync"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/sdk"
)

// Func is a Handler made from a function.
type Func struct {
	HandlerName string
	F           func(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error)
}

func (f Func) Name() string { return f.HandlerName }
func (f Func) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	return f.F(ctx, req)
}

// Fixed answers requests at the listed stages with their decision (Continue
// elsewhere), asks for the same effects every time, and records the stages
// it was called at.
type Fixed struct {
	HandlerName string
	At          map[sdk.Stage]sdk.Decision
	Effects     sdk.Effects

	mu    sync.Mutex
	calls []sdk.Stage
}

func (f *Fixed) Name() string { return f.HandlerName }

func (f *Fixed) Handle(ctx context.Context, req *hook.Request) (sdk.Decision, sdk.Effects, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req.Stage)
	f.mu.Unlock()
	return f.At[req.Stage], f.Effects, nil
}

// Calls returns the stages the handler was called at, in order.
func (f *Fixed) Calls() []sdk.Stage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sdk.Stage(nil), f.calls...)
}

var (
	_ hook.Handler = Func{}
	_ hook.Handler = (*Fixed)(nil)
)
