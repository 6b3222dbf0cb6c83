package workers_test

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/workers"
)

// TestPoolReuses: a goroutine that finished waits for the next function
// instead of ending, up to maxIdle of them, and Close ends those waiting.
func TestPoolReuses(t *testing.T) {
	p := workers.New(2)
	base := runtime.NumGoroutine()
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 3 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release
		})
	}
	close(release)
	wg.Wait()
	waitFor(t, "two idle workers", func() bool { return p.Idle() == 2 })
	waitFor(t, "the third worker ended", func() bool { return runtime.NumGoroutine() == base+2 })

	wg.Add(1)
	p.Go(wg.Done)
	wg.Wait()
	waitFor(t, "the worker back to idle", func() bool { return p.Idle() == 2 })
	if n := runtime.NumGoroutine(); n != base+2 {
		t.Errorf("%d goroutines after reusing one, want %d: a new one was started", n, base+2)
	}

	p.Close()
	if n := p.Idle(); n != 0 {
		t.Errorf("Idle after Close = %d, want 0", n)
	}
	waitFor(t, "the idle workers ended", func() bool { return runtime.NumGoroutine() == base })
}

// TestPoolAfterClose: Go still runs functions after Close, on goroutines
// that end with them.
func TestPoolAfterClose(t *testing.T) {
	p := workers.New(4)
	p.Close()
	base := runtime.NumGoroutine()
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	waitFor(t, "the goroutine ended", func() bool { return runtime.NumGoroutine() == base })
	if n := p.Idle(); n != 0 {
		t.Errorf("Idle = %d after Close, want 0", n)
	}
}

// TestPoolConcurrent: many callers at once, under -race: every function
// runs once.
func TestPoolConcurrent(t *testing.T) {
	p := workers.New(8)
	defer p.Close()
	const callers, each = 16, 200
	var ran sync.WaitGroup
	ran.Add(callers * each)
	var mu sync.Mutex
	count := 0
	var calls sync.WaitGroup
	for range callers {
		calls.Go(func() {
			for range each {
				p.Go(func() {
					mu.Lock()
					count++
					mu.Unlock()
					ran.Done()
				})
			}
		})
	}
	calls.Wait()
	ran.Wait()
	if count != callers*each {
		t.Errorf("%d functions ran, want %d", count, callers*each)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// deep uses about n KiB of stack.
//
//go:noinline
func deep(n int) byte {
	var b [1024]byte
	b[n%1024] = byte(n)
	if n == 0 {
		return b[0]
	}
	return deep(n-1) + b[n%1024]
}

// BenchmarkDeepWork is a function that needs 32 KiB of stack run on a new
// goroutine each time (go) and on the pool's, which keep the stack they
// grew: what the delivery engine's jobs and the server's sessions save.
func BenchmarkDeepWork(b *testing.B) {
	for _, bc := range []struct {
		name string
		run  func(f func())
	}{
		{"go", func(f func()) { go f() }},
		{"pool", workers.New(4).Go},
	} {
		b.Run(bc.name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				bc.run(func() {
					deep(32)
					done <- struct{}{}
				})
				<-done
			}
		})
	}
}
