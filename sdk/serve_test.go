package sdk

import (
	"sync/atomic"
	"testing"
	"time"
)

// A plugin whose gateway died is reparented: watchParent sees its parent
// pid change and says so, once.
func TestWatchParent(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(4242)
	gone := make(chan struct{}, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchParent(nil, 4242, time.Millisecond, func() int { return int(ppid.Load()) }, func() { gone <- struct{}{} })
	}()
	select {
	case <-gone:
		t.Fatal("gone called while the parent is alive")
	case <-time.After(50 * time.Millisecond):
	}
	ppid.Store(1)
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("gone not called 5s after the parent changed")
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("watchParent did not return after calling gone")
	}

	stop := make(chan struct{})
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		watchParent(stop, 4242, time.Millisecond, func() int { return 4242 }, func() { gone <- struct{}{} })
	}()
	close(stop)
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("watchParent did not return after stop")
	}
	if len(gone) != 0 {
		t.Error("gone called with the parent alive")
	}
}
