package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func kvGet(t *testing.T, s *Spool, key string, now time.Time) (string, bool) {
	t.Helper()
	v, ok, err := s.KVGet(key, now)
	if err != nil {
		t.Fatalf("KVGet(%q): %v", key, err)
	}
	return v, ok
}

func TestKVSetGetExpiry(t *testing.T) {
	clock := newFakeClock(testNow())
	s := openSpool(t, t.TempDir(), Options{Now: clock.Now})
	ctx := context.Background()

	if v, ok := kvGet(t, s, "missing", clock.Now()); ok || v != "" {
		t.Errorf("KVGet(missing) on an empty store = %q, %v; want \"\", false", v, ok)
	}
	if err := s.KVSet(ctx, "forever", "v1", 0); err != nil {
		t.Fatalf("KVSet(forever): %v", err)
	}
	if err := s.KVSet(ctx, "short", "v2", time.Minute); err != nil {
		t.Fatalf("KVSet(short): %v", err)
	}
	if err := s.KVSet(ctx, "empty", "", 0); err != nil {
		t.Fatalf("KVSet(empty): %v", err)
	}

	now := clock.Now()
	tests := []struct {
		key    string
		at     time.Time
		want   string
		wantOK bool
	}{
		{"forever", now, "v1", true},
		{"forever", now.Add(100 * 365 * 24 * time.Hour), "v1", true},
		{"short", now, "v2", true},
		{"short", now.Add(time.Minute - time.Nanosecond), "v2", true},
		{"short", now.Add(time.Minute), "", false},
		{"short", now.Add(time.Hour), "", false},
		{"empty", now, "", true},
		{"other", now, "", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s@%v", tt.key, tt.at.Sub(now)), func(t *testing.T) {
			v, ok := kvGet(t, s, tt.key, tt.at)
			if v != tt.want || ok != tt.wantOK {
				t.Errorf("KVGet(%q) = %q, %v; want %q, %v", tt.key, v, ok, tt.want, tt.wantOK)
			}
		})
	}

	// Overwrite replaces value and expiry.
	if err := s.KVSet(ctx, "short", "v3", 0); err != nil {
		t.Fatalf("KVSet(short) again: %v", err)
	}
	if v, ok := kvGet(t, s, "short", now.Add(time.Hour)); !ok || v != "v3" {
		t.Errorf("KVGet(short) after overwrite = %q, %v; want v3, true", v, ok)
	}
	if err := s.KVDelete(ctx, "short"); err != nil {
		t.Fatalf("KVDelete: %v", err)
	}
	if _, ok := kvGet(t, s, "short", now); ok {
		t.Errorf("KVGet(short) after delete: found")
	}
	if err := s.KVDelete(ctx, "never-set"); err != nil {
		t.Errorf("KVDelete(never-set) = %v; want nil", err)
	}
}

func TestKVBadInput(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	ctx := context.Background()
	if err := s.KVSet(ctx, "", "v", 0); err == nil {
		t.Error("KVSet with an empty key: no error")
	}
	if err := s.KVSet(ctx, strings.Repeat("k", KVMaxKey+1), "v", 0); err == nil {
		t.Error("KVSet with a long key: no error")
	}
	if err := s.KVSet(ctx, "k", strings.Repeat("v", KVMaxValue+1), 0); err == nil {
		t.Error("KVSet with a long value: no error")
	}
	if err := s.KVSet(ctx, "k", "v", -time.Second); err == nil {
		t.Error("KVSet with a negative ttl: no error")
	}
	if _, _, err := s.KVGet("", testNow()); err == nil {
		t.Error("KVGet with an empty key: no error")
	}
	if err := s.KVSet(ctx, "text", "abc", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVIncr(ctx, "text", 1, 0); !errors.Is(err, ErrKVNotInteger) {
		t.Errorf("KVIncr on a text value = %v; want ErrKVNotInteger", err)
	}
	if v, _ := kvGet(t, s, "text", testNow()); v != "abc" {
		t.Errorf("after a failed KVIncr the value is %q; want abc", v)
	}
	if err := s.KVSet(ctx, "big", "9223372036854775807", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVIncr(ctx, "big", 1, 0); err == nil {
		t.Error("KVIncr past MaxInt64: no error")
	}
}

func TestKVIncr(t *testing.T) {
	clock := newFakeClock(testNow())
	s := openSpool(t, t.TempDir(), Options{Now: clock.Now})
	ctx := context.Background()

	incr := func(key string, delta int64, ttl time.Duration) int64 {
		t.Helper()
		n, err := s.KVIncr(ctx, key, delta, ttl)
		if err != nil {
			t.Fatalf("KVIncr(%q, %d): %v", key, delta, err)
		}
		return n
	}
	if got := incr("c", 1, time.Minute); got != 1 {
		t.Errorf("KVIncr creating c = %d; want 1", got)
	}
	clock.Advance(30 * time.Second)
	if got := incr("c", 5, time.Hour); got != 6 {
		t.Errorf("KVIncr(c, 5) = %d; want 6", got)
	}
	if got := incr("c", -2, 0); got != 4 {
		t.Errorf("KVIncr(c, -2) = %d; want 4", got)
	}
	if v, ok := kvGet(t, s, "c", clock.Now()); !ok || v != "4" {
		t.Errorf("KVGet(c) = %q, %v; want \"4\", true", v, ok)
	}
	// The expiry set at creation stays: the later ttl of an hour did not extend it.
	clock.Advance(30 * time.Second)
	if _, ok := kvGet(t, s, "c", clock.Now()); ok {
		t.Errorf("KVGet(c) after its ttl: found; the existing expiry must not be extended")
	}
	if got := incr("c", 3, 0); got != 3 {
		t.Errorf("KVIncr on an expired key = %d; want 3 (reset)", got)
	}
	clock.Advance(1000 * time.Hour)
	if v, ok := kvGet(t, s, "c", clock.Now()); !ok || v != "3" {
		t.Errorf("KVGet(c) re-created with ttl 0 = %q, %v; want \"3\", true", v, ok)
	}
	if err := s.KVSet(ctx, "s", "41", 0); err != nil {
		t.Fatal(err)
	}
	if got := incr("s", 1, 0); got != 42 {
		t.Errorf("KVIncr on a value set by KVSet = %d; want 42", got)
	}
}

func TestKVIncrConcurrent(t *testing.T) {
	s := openSpool(t, t.TempDir(), Options{})
	ctx := context.Background()
	const workers, each = 100, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := s.KVIncr(ctx, "counter", 1, time.Hour); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("KVIncr: %v", err)
	}
	v, ok, err := s.KVGet("counter", testNow())
	if err != nil || !ok || v != fmt.Sprint(workers*each) {
		t.Errorf("KVGet(counter) = %q, %v, %v; want %d", v, ok, err, workers*each)
	}
}

func TestKVSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.KVSet(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.KVIncr(ctx, "n", 7, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.KVSet(ctx, "k", "v", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("KVSet after Close = %v; want ErrClosed", err)
	}

	s = openSpool(t, dir, Options{Now: testNow})
	if v, ok := kvGet(t, s, "k", testNow()); !ok || v != "v" {
		t.Errorf("after reopen KVGet(k) = %q, %v; want v, true", v, ok)
	}
	if v, ok := kvGet(t, s, "n", testNow()); !ok || v != "7" {
		t.Errorf("after reopen KVGet(n) = %q, %v; want 7, true", v, ok)
	}
	if _, ok := kvGet(t, s, "n", testNow().Add(time.Hour)); ok {
		t.Errorf("after reopen KVGet(n) past its ttl: found")
	}
}

func TestKVSweep(t *testing.T) {
	clock := newFakeClock(testNow())
	s := openSpool(t, t.TempDir(), Options{Now: clock.Now})
	ctx := context.Background()
	if n, err := s.KVSweep(ctx, clock.Now()); err != nil || n != 0 {
		t.Errorf("KVSweep on an empty store = %d, %v; want 0, nil", n, err)
	}
	for i := range 10 {
		ttl := time.Duration(0)
		if i%2 == 0 {
			ttl = time.Duration(i+1) * time.Minute
		}
		if err := s.KVSet(ctx, fmt.Sprintf("k%d", i), "v", ttl); err != nil {
			t.Fatal(err)
		}
	}
	// Expiries: k0 1m, k2 3m, k4 5m, k6 7m, k8 9m; odd keys never.
	n, err := s.KVSweep(ctx, clock.Now().Add(4*time.Minute))
	if err != nil || n != 2 {
		t.Errorf("KVSweep at +4m = %d, %v; want 2, nil", n, err)
	}
	// The swept entries are gone even for a reader with an earlier clock.
	if _, ok := kvGet(t, s, "k0", clock.Now()); ok {
		t.Errorf("k0 still present after the sweep")
	}
	if _, ok := kvGet(t, s, "k4", clock.Now()); !ok {
		t.Errorf("k4 (not yet expired) removed by the sweep")
	}
	n, err = s.KVSweep(ctx, clock.Now().Add(time.Hour))
	if err != nil || n != 3 {
		t.Errorf("KVSweep at +1h = %d, %v; want 3, nil", n, err)
	}
	for i := 1; i < 10; i += 2 {
		if _, ok := kvGet(t, s, fmt.Sprintf("k%d", i), clock.Now().Add(time.Hour)); !ok {
			t.Errorf("k%d (no ttl) removed by the sweep", i)
		}
	}
}

func TestKVKeys(t *testing.T) {
	clock := newFakeClock(testNow())
	s := openSpool(t, t.TempDir(), Options{Now: clock.Now})
	ctx := context.Background()
	if keys, err := s.KVKeys("a:", clock.Now()); err != nil || keys != nil {
		t.Errorf("KVKeys on an empty store = %q, %v; want nil, nil", keys, err)
	}
	for _, kv := range []struct {
		key string
		ttl time.Duration
	}{
		{"a:2", 0}, {"a:1", 0}, {"a:", 0}, {"a:3", time.Minute}, {"a", 0}, {"b:1", 0}, {"a;1", 0},
	} {
		if err := s.KVSet(ctx, kv.key, "v", kv.ttl); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		prefix string
		at     time.Duration
		want   string
	}{
		{"a:", 0, "a:,a:1,a:2,a:3"},
		{"a:", time.Minute, "a:,a:1,a:2"}, // a:3 expired
		{"a", 0, "a,a:,a:1,a:2,a:3,a;1"},
		{"a:2", 0, "a:2"},
		{"c", 0, ""},
	} {
		keys, err := s.KVKeys(tc.prefix, clock.Now().Add(tc.at))
		if got := strings.Join(keys, ","); err != nil || got != tc.want {
			t.Errorf("KVKeys(%q) at +%v = %q, %v; want %q", tc.prefix, tc.at, got, err, tc.want)
		}
	}
	if _, err := s.KVKeys("", clock.Now()); err == nil {
		t.Errorf("KVKeys(\"\") = nil error; want one")
	}
}
