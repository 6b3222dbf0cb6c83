package hook

import (
	"context"
	"sync/atomic"

	"github.com/mailgate/gateway/sdk"
)

// Live is a Dispatcher whose chain can be replaced while requests run: the
// gateway hands one Live to every SMTP server and to the delivery engine,
// and a configuration reload swaps in a newly built chain. Each Dispatch
// loads the current chain once and runs the whole stage on it, so a
// request sees either the old pipeline or the new one, never a mix; later
// stages of the same session run on whichever chain is current then.
//
// The zero Live has no chain and answers Continue. Live is safe for
// concurrent use.
type Live struct {
	chain atomic.Pointer[Chain]
}

// NewLive returns a Live dispatching on c (nil: no handlers).
func NewLive(c *Chain) *Live {
	l := &Live{}
	l.chain.Store(c)
	return l
}

// Chain returns the current chain.
func (l *Live) Chain() *Chain { return l.chain.Load() }

// Swap makes c the current chain and returns the one it replaces. Requests
// already running on the old chain finish on it: release the old chain's
// handlers only once those have ended (Chain.MaxDuration bounds how long
// that can take).
func (l *Live) Swap(c *Chain) (old *Chain) { return l.chain.Swap(c) }

// Dispatch implements Dispatcher on the current chain.
func (l *Live) Dispatch(ctx context.Context, req *Request) Result {
	return l.chain.Load().Dispatch(ctx, req)
}

// Runs implements Runner on the current chain. A reload between Runs and
// Dispatch is harmless: a stage passed over had no handlers on the chain
// current then, as if it had been dispatched on it.
func (l *Live) Runs(stage sdk.Stage) bool { return l.chain.Load().Runs(stage) }

var (
	_ Dispatcher = (*Chain)(nil)
	_ Dispatcher = (*Live)(nil)
	_ Runner     = (*Chain)(nil)
	_ Runner     = (*Live)(nil)
)
