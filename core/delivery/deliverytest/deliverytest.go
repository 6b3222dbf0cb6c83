// Package deliverytest holds test doubles for the delivery engine: a
// scripted Transport and a fake Clock.
package deliverytest

import (
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// OK is a 250 delivered result.
func OK() delivery.Result {
	return delivery.Result{Class: delivery.Delivered, Code: 250, Enhanced: sdk.EnhancedCode{2, 0, 0}, Text: "ok", RemoteMTA: "mx.test"}
}

// Temp is a temporary failure with the given reply.
func Temp(code int, enhanced sdk.EnhancedCode, text string) delivery.Result {
	return delivery.Result{Class: delivery.Temporary, Code: code, Enhanced: enhanced, Text: text, RemoteMTA: "mx.test"}
}

// Perm is a permanent failure with the given reply.
func Perm(code int, enhanced sdk.EnhancedCode, text string) delivery.Result {
	return delivery.Result{Class: delivery.Permanent, Code: code, Enhanced: enhanced, Text: text, RemoteMTA: "mx.test"}
}

// Call is one Deliver call as the Transport saw it.
type Call struct {
	Job  delivery.Job // Envelope and Recipients are copies
	Body []byte       // what Job.Open returned, read at the call ("" if it failed)
}

// Rcpts returns the call's recipient addresses.
func (c Call) Rcpts() []string {
	var out []string
	for _, r := range c.Job.Recipients {
		out = append(out, r.Address.String())
	}
	return out
}

// Transport is a scripted delivery.Transport. For each recipient it
// answers the next result queued for that address (Script), else the next
// result queued for any call (ScriptCall), else Default (OK when unset).
// It records every call. Block makes calls wait until Unblock (or their
// ctx ends); a call's Func, when set, replaces all of that (and may panic).
// The zero value is ready to use.
type Transport struct {
	Default *delivery.Result // nil = OK()
	// SkipBody leaves Call.Body unread (benchmarks).
	SkipBody bool

	mu          sync.Mutex
	byRcpt      map[string][]delivery.Result
	perCall     []func(ctx context.Context, job *delivery.Job) []delivery.Result
	calls       []Call
	gate        chan struct{} // nil: not blocking
	inFlight    int
	maxInFlight int
}

// Script queues results for addr (compared case-insensitively), used one
// per attempt in order.
func (t *Transport) Script(addr string, results ...delivery.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byRcpt == nil {
		t.byRcpt = make(map[string][]delivery.Result)
	}
	k := strings.ToLower(addr)
	t.byRcpt[k] = append(t.byRcpt[k], results...)
}

// ScriptCall queues f to answer one whole call, in order of calls.
func (t *Transport) ScriptCall(f func(ctx context.Context, job *delivery.Job) []delivery.Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.perCall = append(t.perCall, f)
}

// Block makes the following calls wait for Unblock or their ctx.
func (t *Transport) Block() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gate == nil {
		t.gate = make(chan struct{})
	}
}

// Unblock lets every waiting and later call go on.
func (t *Transport) Unblock() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gate != nil {
		close(t.gate)
		t.gate = nil
	}
}

// Deliver implements delivery.Transport.
func (t *Transport) Deliver(ctx context.Context, job *delivery.Job) []delivery.Result {
	c := Call{Job: *job}
	c.Job.Recipients = append([]envelope.Recipient(nil), job.Recipients...)
	if job.Envelope != nil {
		env := *job.Envelope
		env.Recipients = append([]envelope.Recipient(nil), job.Envelope.Recipients...)
		c.Job.Envelope = &env
	}
	if !t.SkipBody && job.Open != nil {
		if rc, err := job.Open(); err == nil {
			c.Body, _ = io.ReadAll(rc)
			rc.Close()
		}
	}

	t.mu.Lock()
	t.calls = append(t.calls, c)
	t.inFlight++
	t.maxInFlight = max(t.maxInFlight, t.inFlight)
	gate := t.gate
	var f func(context.Context, *delivery.Job) []delivery.Result
	if len(t.perCall) > 0 {
		f, t.perCall = t.perCall[0], t.perCall[1:]
	}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.inFlight--
		t.mu.Unlock()
	}()

	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			out := make([]delivery.Result, len(job.Recipients))
			for i := range out {
				out[i] = Temp(421, sdk.EnhancedCode{4, 4, 2}, "connection aborted: "+ctx.Err().Error())
			}
			return out
		}
	}
	if f != nil {
		return f(ctx, job)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]delivery.Result, len(job.Recipients))
	for i, r := range job.Recipients {
		k := strings.ToLower(r.Address.String())
		switch q := t.byRcpt[k]; {
		case len(q) > 0:
			out[i], t.byRcpt[k] = q[0], q[1:]
		case t.Default != nil:
			out[i] = *t.Default
		default:
			out[i] = OK()
		}
	}
	return out
}

// Calls returns the calls so far, in order.
func (t *Transport) Calls() []Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Call(nil), t.calls...)
}

// NumCalls returns how many calls there were.
func (t *Transport) NumCalls() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.calls)
}

// InFlight returns how many calls are running now; MaxInFlight the most
// there ever were at once.
func (t *Transport) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inFlight
}

func (t *Transport) MaxInFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxInFlight
}

// Clock is a fake clock safe for concurrent use. Pass its Now to
// delivery.Options and queue.Options; move it with Advance or Set and then
// Kick the engine.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var _ delivery.Transport = (*Transport)(nil)
