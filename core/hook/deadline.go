package hook

import (
	"context"
	"sync"
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
	at     time.Time

	mu      sync.Mutex
	timed   context.Context // WithDeadline(parent, at): made by the first Done
	cancel  context.CancelFunc
	stopped bool
}

// withTimeout returns parent ending after timeout; call stop when the
// handler has returned.
func withTimeout(parent context.Context, timeout time.Duration) *deadline {
	return &deadline{parent: parent, at: time.Now().Add(timeout)}
}

// Deadline implements context.Context: the earlier of the parent's
// deadline and the timeout's.
func (d *deadline) Deadline() (time.Time, bool) {
	if pd, ok := d.parent.Deadline(); ok && pd.Before(d.at) {
		return pd, true
	}
	return d.at, true
}

// Done implements context.Context. The first call starts the timer.
func (d *deadline) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timed == nil {
		d.timed, d.cancel = context.WithDeadline(d.parent, d.at)
		if d.stopped {
			d.cancel()
		}
	}
	return d.timed.Done()
}

// Err implements context.Context: the parent's error, or
// context.Canceled once stopped, or context.DeadlineExceeded once the
// deadline has passed, timer or not (so it is also what Expired asks).
func (d *deadline) Err() error {
	d.mu.Lock()
	timed, stopped := d.timed, d.stopped
	d.mu.Unlock()
	switch {
	case timed != nil:
		if err := timed.Err(); err != nil {
			return err
		}
	case stopped:
		return context.Canceled
	default:
		if err := d.parent.Err(); err != nil {
			return err
		}
	}
	if at, _ := d.Deadline(); time.Until(at) <= 0 { // one read of the monotonic clock, half of time.Now
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context.
func (d *deadline) Value(key any) any {
	d.mu.Lock()
	timed := d.timed
	d.mu.Unlock()
	if timed != nil {
		return timed.Value(key)
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
	d.stopped = true
	if d.cancel != nil {
		d.cancel()
	}
}

var _ sdk.CancelParent = (*deadline)(nil)
