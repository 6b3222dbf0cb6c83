package hook

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// deadline is the context a handler with a timeout runs under: the
// caller's, ending at the timeout. It starts no timer until something
// waits on Done (a handler blocked on I/O, a context derived from it): a
// handler that only computes, as most Lua handlers do, is held to the
// deadline by Err and Deadline, and its call costs no timer, no channel
// and no entry in the caller's list of children, which context.WithTimeout
// makes on every call. Once stopped (the call returned) it is cancelled,
// as a WithTimeout context is after its cancel.
type deadline struct {
	parent context.Context
	at     time.Time // the earlier of the parent's deadline and the timeout's

	// Read without the lock (Err runs several times a call: the Lua
	// meter's first look, the handler's own expiry check, the chain's).
	timed   atomic.Pointer[timer] // made by the first Done
	stopped atomic.Bool

	mu sync.Mutex // makes timed once, and orders it with stop
}

// timer is a deadline's context once something waits on its Done.
type timer struct {
	ctx    context.Context // WithDeadline(parent, at)
	cancel context.CancelFunc
}

// withTimeout returns parent ending after timeout; call stop when the
// handler has returned.
func withTimeout(parent context.Context, timeout time.Duration) *deadline {
	at := time.Now().Add(timeout)
	if pd, ok := parent.Deadline(); ok && pd.Before(at) {
		at = pd
	}
	return &deadline{parent: parent, at: at}
}

// Deadline implements context.Context: the earlier of the parent's
// deadline and the timeout's.
func (d *deadline) Deadline() (time.Time, bool) { return d.at, true }

// Done implements context.Context. The first call starts the timer.
func (d *deadline) Done() <-chan struct{} {
	if t := d.timed.Load(); t != nil {
		return t.ctx.Done()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.timed.Load()
	if t == nil {
		t = &timer{}
		t.ctx, t.cancel = context.WithDeadline(d.parent, d.at)
		d.timed.Store(t)
		if d.stopped.Load() {
			t.cancel()
		}
	}
	return t.ctx.Done()
}

// Err implements context.Context: the parent's error, or
// context.Canceled once stopped, or context.DeadlineExceeded once the
// deadline has passed, timer or not (so it is also what Expired asks).
func (d *deadline) Err() error {
	switch t := d.timed.Load(); {
	case t != nil:
		if err := t.ctx.Err(); err != nil {
			return err
		}
	case d.stopped.Load():
		return context.Canceled
	default:
		if err := d.parent.Err(); err != nil {
			return err
		}
	}
	if time.Until(d.at) <= 0 { // one read of the monotonic clock, half of time.Now
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context.
func (d *deadline) Value(key any) any {
	if t := d.timed.Load(); t != nil {
		return t.ctx.Value(key)
	}
	return d.parent.Value(key)
}

// CancelParent implements sdk.CancelParent: d ends at its deadline or
// when its parent ends (or when stopped, which is after the call). A
// plugin call waits on the parent's Done and its call channel's timer,
// so that d makes no timer of its own.
func (d *deadline) CancelParent() context.Context { return d.parent }

// stop cancels d and releases its timer, if it has one.
func (d *deadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped.Store(true)
	if t := d.timed.Load(); t != nil {
		t.cancel()
	}
}

var _ sdk.CancelParent = (*deadline)(nil)
