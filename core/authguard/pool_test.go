package authguard

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPoolBounds: never more checks at once than workers, and every one
// runs.
func TestPoolBounds(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		p := NewPool(workers, time.Minute)
		var running, most, ran atomic.Int32
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				err := p.Run(t.Context(), func() {
					n := running.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(time.Millisecond)
					running.Add(-1)
					ran.Add(1)
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if most.Load() > int32(workers) || ran.Load() != 30 {
			t.Errorf("workers %d: %d at once, %d ran", workers, most.Load(), ran.Load())
		}
	}
}

// TestPoolWait: a check that finds every worker busy waits at most
// maxWait (ErrBusy), or until its ctx ends; it does not run then.
func TestPoolWait(t *testing.T) {
	p := NewPool(1, 50*time.Millisecond)
	hold, release := make(chan struct{}), make(chan struct{})
	go p.Run(context.Background(), func() { close(hold); <-release })
	<-hold
	defer close(release)

	ran := false
	start := time.Now()
	err := p.Run(t.Context(), func() { ran = true })
	if !errors.Is(err, ErrBusy) || ran {
		t.Fatalf("Run with every worker busy: %v, ran %v", err, ran)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond || waited > time.Second {
		t.Fatalf("waited %v, want about 50ms", waited)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx, func() { ran = true }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("Run with an ended ctx: %v, ran %v", err, ran)
	}
}

// TestPoolPanic: a check that panics gives its worker back.
func TestPoolPanic(t *testing.T) {
	p := NewPool(1, 50*time.Millisecond)
	func() {
		defer func() { recover() }()
		p.Run(t.Context(), func() { panic("boom") })
	}()
	if err := p.Run(t.Context(), func() {}); err != nil {
		t.Fatalf("Run after a panic: %v", err)
	}
}

// TestDefaultWorkers: half the processors, at least one.
func TestDefaultWorkers(t *testing.T) {
	g := New(Options{})
	if got, want := cap(g.pool.slots), max(1, runtime.GOMAXPROCS(0)/2); got != want {
		t.Fatalf("%d workers, want %d", got, want)
	}
	if g.limiter != nil {
		t.Fatal("a limiter without a failure limit")
	}
}
