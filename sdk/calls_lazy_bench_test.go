package sdk

import (
	"context"
	"sync"
	"testing"
	"time"
)

// lazyDeadline is a context like core/hook's timeout context: its
// deadline is known at once, but its timer, channel and place among its
// parent's children are made by the first Done; and it is a
// CancelParent, so that a call on the call channel need not ask for it.
type lazyDeadline struct {
	context.Context // the parent
	at              time.Time

	mu     sync.Mutex
	timed  context.Context
	cancel context.CancelFunc
}

func (d *lazyDeadline) Deadline() (time.Time, bool) { return d.at, true }

func (d *lazyDeadline) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timed == nil {
		d.timed, d.cancel = context.WithDeadline(d.Context, d.at)
	}
	return d.timed.Done()
}

func (d *lazyDeadline) CancelParent() context.Context { return d.Context }

// madeDone reports whether Done was called.
func (d *lazyDeadline) madeDone() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.timed != nil
}

func (d *lazyDeadline) Err() error {
	d.mu.Lock()
	timed := d.timed
	d.mu.Unlock()
	if timed != nil {
		return timed.Err()
	}
	if time.Until(d.at) <= 0 {
		return context.DeadlineExceeded
	}
	return d.Context.Err()
}

func (d *lazyDeadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		d.cancel()
	}
}

// BenchmarkCallConnHandleHookCtx is BenchmarkCallConnHandle under a
// context made per call as the hook chain makes one for a handler with a
// timeout (lazyDeadline, under a cancellable session context).
func BenchmarkCallConnHandleHookCtx(b *testing.B) {
	host, plug := unixPair(b)
	served := make(chan error, 1)
	go func() { served <- serveCalls(plug, callsPlugin{}) }()
	c := NewCallConn(host)
	defer func() { c.Close(); <-served }()
	session, cancel := context.WithCancel(b.Context())
	defer cancel()
	r := benchRcptRequest()
	b.ReportAllocs()
	for b.Loop() {
		ctx := &lazyDeadline{Context: session, at: time.Now().Add(2 * time.Second)}
		_, _, err := c.Handle(ctx, r)
		ctx.stop()
		if err != nil {
			b.Fatal(err)
		}
	}
}
