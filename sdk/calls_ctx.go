package sdk

import (
	"context"
	"sync"
	"time"
)

// callCtx is the context of one hook call in the plugin: the call's
// deadline and the host's cancel, with no timer and no registration
// anywhere until something waits on Done. Most hooks never look at their
// context, and the timer and parent registration of a context.WithDeadline
// were about a tenth of the plugin's time per call (timer heap, the parent's
// children, and their removal). Err reads the clock, so a hook that polls
// it sees the deadline pass without any timer.
type callCtx struct {
	deadline time.Time // zero = none

	mu    sync.Mutex
	done  chan struct{} // made by the first Done; closed when the call ends
	err   error         // why it ended; nil = running
	timer *time.Timer   // the deadline's, once Done was asked for
}

var _ context.Context = (*callCtx)(nil)

// newCallCtx returns the context of a call with deadline (zero = none).
func newCallCtx(deadline time.Time) *callCtx { return &callCtx{deadline: deadline} }

// Deadline returns the call's deadline.
func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

// Value returns nil: a call's context carries no values.
func (c *callCtx) Value(any) any { return nil }

// Done returns a channel closed when the call ends; the first Done starts
// the deadline's timer.
func (c *callCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	switch {
	case c.err != nil:
		close(c.done)
	case c.expiredLocked():
	case !c.deadline.IsZero():
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.end(context.DeadlineExceeded) })
	}
	return c.done
}

// Err returns nil while the call runs, then why it ended.
func (c *callCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.expiredLocked()
	}
	return c.err
}

// expiredLocked ends the call if its deadline has passed, and reports
// whether it did.
func (c *callCtx) expiredLocked() bool {
	if c.deadline.IsZero() || time.Until(c.deadline) > 0 {
		return false
	}
	c.endLocked(context.DeadlineExceeded)
	return true
}

// cancel ends the call: the host gave up on it, the channel closed, or
// the call returned.
func (c *callCtx) cancel() { c.end(context.Canceled) }

// end ends the call with err unless it has ended already.
func (c *callCtx) end(err error) {
	c.mu.Lock()
	c.endLocked(err)
	c.mu.Unlock()
}

func (c *callCtx) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
}
