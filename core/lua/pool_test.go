package lua

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func loadPool(t *testing.T, size int) *Script {
	t.Helper()
	s, err := Load(Options{Name: "t", Source: "function on_rcpt(ctx) end", Pool: size})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestPoolLastUsedFirst checks that get returns the state put back last:
// a server with few sessions at once keeps to the states its caches hold.
func TestPoolLastUsedFirst(t *testing.T) {
	s := loadPool(t, 4)
	ctx := context.Background()
	a, err := s.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two gets returned one state")
	}
	s.put(a, true)
	s.put(b, true)
	get := func(want *state, name string) {
		t.Helper()
		if got, err := s.get(ctx); err != nil || got != want {
			t.Errorf("get = %p, %v; want %s (%p), the state put back last", got, err, name, want)
		}
	}
	get(b, "b")
	get(a, "a")
	s.put(b, true)
	s.put(a, true)
	get(a, "a")
	s.put(a, true)
	if n := s.StatesCreated(); n != 2 {
		t.Errorf("%d states made, want 2", n)
	}
}

// TestPoolWaiter checks that a get waiting at a full pool takes the state
// put back, or gives up at its context's end, or fails once the script is
// closed.
func TestPoolWaiter(t *testing.T) {
	ctx := context.Background()
	wait := func(s *Script, ctx context.Context) chan error {
		got := make(chan error, 1)
		go func() {
			st, err := s.get(ctx)
			if err == nil {
				s.put(st, true)
			}
			got <- err
		}()
		time.Sleep(20 * time.Millisecond) // the goroutine waits by now, or soon
		return got
	}

	t.Run("put", func(t *testing.T) {
		s := loadPool(t, 1)
		a, _ := s.get(ctx)
		got := wait(s, ctx)
		s.put(a, true)
		if err := <-got; err != nil {
			t.Errorf("get: %v, want the state put back", err)
		}
	})
	t.Run("discarded", func(t *testing.T) {
		s := loadPool(t, 1)
		a, _ := s.get(ctx)
		got := wait(s, ctx)
		s.put(a, false) // its token free: the waiter makes a new state
		if err := <-got; err != nil {
			t.Errorf("get: %v, want a new state", err)
		}
		if n := s.StatesCreated(); n != 2 {
			t.Errorf("%d states made, want 2", n)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		s := loadPool(t, 1)
		a, _ := s.get(ctx)
		defer s.put(a, true)
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if err := <-wait(s, short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("get: %v, want the deadline", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s := loadPool(t, 1)
		a, _ := s.get(ctx)
		got1, got2 := wait(s, ctx), wait(s, ctx)
		s.Close()
		s.put(a, true) // discarded: the script is closed
		for _, got := range []chan error{got1, got2} {
			if err := <-got; !errors.Is(err, ErrClosed) {
				t.Errorf("get: %v, want ErrClosed", err)
			}
		}
		if n := s.StatesAlive(); n != 0 {
			t.Errorf("%d states alive after Close, want 0", n)
		}
	})
}

// TestPoolConcurrent runs many gets and puts at once (with -race): every
// get is served, never more states alive than the pool's size.
func TestPoolConcurrent(t *testing.T) {
	const size, workers, rounds = 3, 16, 200
	s := loadPool(t, size)
	var wg sync.WaitGroup
	var mu sync.Mutex
	inUse, peak := 0, 0
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				st, err := s.get(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inUse++
				peak = max(peak, inUse)
				mu.Unlock()
				time.Sleep(time.Microsecond)
				mu.Lock()
				inUse--
				mu.Unlock()
				s.put(st, (w+i)%7 != 0) // some discarded, as after a failed call
			}
		})
	}
	wg.Wait()
	if peak > size {
		t.Errorf("%d states in use at once, want at most %d", peak, size)
	}
	if n := s.StatesAlive(); n > size {
		t.Errorf("%d states alive, want at most %d", n, size)
	}
}
