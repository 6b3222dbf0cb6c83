package hostsvc_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mailgate/gateway/core/hostsvc"
)

// clock is a settable time for the memory store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func TestMemoryExpiry(t *testing.T) {
	ctx := context.Background()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m := hostsvc.NewMemory(hostsvc.MemoryOptions{Now: c.Now})
	if err := m.KVSet(ctx, "short", "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.KVSet(ctx, "forever", "b", 0); err != nil {
		t.Fatal(err)
	}
	if n, err := m.KVIncr(ctx, "n", 3, time.Hour); n != 3 || err != nil {
		t.Fatalf("incr: %d, %v", n, err)
	}
	c.Add(30 * time.Minute)
	if n, _ := m.KVIncr(ctx, "n", 1, time.Minute); n != 4 {
		t.Errorf("incr of a live key: %d, want 4 (its first expiry stands)", n)
	}
	if _, ok, _ := m.KVGet("short", c.Now()); ok {
		t.Error("short read after its ttl")
	}
	c.Add(31 * time.Minute)
	if n, _ := m.KVIncr(ctx, "n", 1, 0); n != 1 {
		t.Errorf("incr after the expiry: %d, want 1", n)
	}
	if v, ok, _ := m.KVGet("forever", c.Now()); !ok || v != "b" {
		t.Errorf("forever = %q, %v", v, ok)
	}
	// The writes removed what had expired: "short" is gone from memory,
	// not just hidden.
	if st := m.Stats(); st.Entries != 2 || st.Evicted != 0 {
		t.Errorf("stats %+v, want 2 entries (forever, n) and nothing evicted", st)
	}
}

func TestMemoryBounds(t *testing.T) {
	ctx := context.Background()
	c := &clock{now: time.Unix(1_700_000_000, 0)}
	m := hostsvc.NewMemory(hostsvc.MemoryOptions{MaxEntries: 10, Now: c.Now})
	// Ten entries expiring in 1..10 minutes, then five more: the five
	// closest to expiry go.
	for i := 1; i <= 15; i++ {
		if err := m.KVSet(ctx, fmt.Sprint("k", i), "v", time.Duration(i)*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	st := m.Stats()
	if st.Entries != 10 || st.Evicted != 5 {
		t.Errorf("stats %+v, want 10 entries, 5 evicted", st)
	}
	for i := 1; i <= 15; i++ {
		_, ok, _ := m.KVGet(fmt.Sprint("k", i), c.Now())
		if ok != (i > 5) {
			t.Errorf("k%d present = %v, want %v", i, ok, i > 5)
		}
	}

	// Bytes: 1 KiB values in a 10 KiB store.
	m = hostsvc.NewMemory(hostsvc.MemoryOptions{MaxBytes: 10 << 10})
	big := string(make([]byte, 1<<10))
	for i := range 100 {
		if err := m.KVSet(ctx, strconv.Itoa(i), big, 0); err != nil {
			t.Fatal(err)
		}
	}
	if st := m.Stats(); st.Bytes > 10<<10 || st.Entries == 0 || st.Entries > 10 {
		t.Errorf("stats %+v, want at most 10 KiB and some entries", st)
	}
	if _, ok, _ := m.KVGet("99", time.Now()); !ok {
		t.Error("the last write was evicted; want the oldest to go")
	}
}

func TestMemoryIncrErrors(t *testing.T) {
	ctx := context.Background()
	m := hostsvc.NewMemory(hostsvc.MemoryOptions{})
	m.KVSet(ctx, "text", "abc", 0)
	if _, err := m.KVIncr(ctx, "text", 1, 0); !errors.Is(err, hostsvc.ErrNotInteger) {
		t.Errorf("incr of text: %v, want ErrNotInteger", err)
	}
	m.KVSet(ctx, "min", "-9223372036854775808", 0)
	if _, err := m.KVIncr(ctx, "min", -1, 0); !errors.Is(err, hostsvc.ErrOverflow) {
		t.Errorf("incr below MinInt64: %v, want ErrOverflow", err)
	}
	if v, _, _ := m.KVGet("min", time.Now()); v != "-9223372036854775808" {
		t.Errorf("min after a failed incr = %q, want it unchanged", v)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.KVSet(cctx, "k", "v", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("set with a cancelled ctx: %v", err)
	}
}

func TestMemoryConcurrentIncr(t *testing.T) {
	m := hostsvc.NewMemory(hostsvc.MemoryOptions{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 20 {
				m.KVIncr(context.Background(), "n", 1, time.Hour)
			}
		})
	}
	wg.Wait()
	if v, _, _ := m.KVGet("n", time.Now()); v != "1000" {
		t.Errorf("n = %q after 1000 increments", v)
	}
}
