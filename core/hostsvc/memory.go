package hostsvc

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// Defaults for MemoryOptions.
const (
	DefaultMemoryEntries = 100_000
	DefaultMemoryBytes   = 64 << 20

	// entryOverhead is what an entry costs beyond its key and value (the
	// map slot, the entry, its heap slot), counted against MaxBytes.
	entryOverhead = 96
)

// MemoryOptions bound a Memory.
type MemoryOptions struct {
	MaxEntries int              // <= 0 = DefaultMemoryEntries
	MaxBytes   int64            // keys, values and overhead; <= 0 = DefaultMemoryBytes
	Now        func() time.Time // the clock; nil = time.Now (tests)
}

// Memory is the in-memory store of the Ephemeral kind: the Store contract
// of the spool's key-value store, without a disk. Expired entries are
// removed lazily, with no goroutine: a read finds an expired key absent
// and removes it, and every write first removes the entries whose expiry
// has passed (kept in a heap by expiry, so this costs only what it
// removes). When a write leaves more than MaxEntries entries or MaxBytes
// bytes, the entries closest to expiry go first (those without expiry
// last). It is safe for concurrent use.
type Memory struct {
	maxEntries int
	maxBytes   int64
	now        func() time.Time

	mu      sync.Mutex
	entries map[string]*memEntry
	byExp   expiryHeap
	bytes   int64
	evicted uint64
}

type memEntry struct {
	key, value string
	exp        int64 // Unix ns; 0 = never
	index      int   // in byExp
}

// NewMemory returns an empty store.
func NewMemory(opt MemoryOptions) *Memory {
	m := &Memory{maxEntries: opt.MaxEntries, maxBytes: opt.MaxBytes, now: opt.Now, entries: map[string]*memEntry{}}
	if m.maxEntries <= 0 {
		m.maxEntries = DefaultMemoryEntries
	}
	if m.maxBytes <= 0 {
		m.maxBytes = DefaultMemoryBytes
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// MemoryStats are a Memory's counts.
type MemoryStats struct {
	Entries int
	Bytes   int64
	Evicted uint64 // entries dropped, unexpired, to stay within the bounds
}

// Stats returns the current counts.
func (m *Memory) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return MemoryStats{Entries: len(m.entries), Bytes: m.bytes, Evicted: m.evicted}
}

// KVGet implements Store.
func (m *Memory) KVGet(key string, now time.Time) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.live(key, now.UnixNano())
	if e == nil {
		return "", false, nil
	}
	return e.value, true, nil
}

// KVSet implements Store.
func (m *Memory) KVSet(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	m.expire(now)
	m.put(key, value, expiry(now, ttl))
	return nil
}

// KVIncr implements Store.
func (m *Memory) KVIncr(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	m.expire(now)
	var cur int64
	exp := expiry(now, ttl)
	if e := m.entries[key]; e != nil {
		var err error
		if cur, err = strconv.ParseInt(e.value, 10, 64); err != nil {
			return 0, fmt.Errorf("hostsvc: memory: %q: %w", key, ErrNotInteger)
		}
		exp = e.exp
	}
	if (delta > 0 && cur > math.MaxInt64-delta) || (delta < 0 && cur < math.MinInt64-delta) {
		return 0, fmt.Errorf("hostsvc: memory: %q: %d%+d: %w", key, cur, delta, ErrOverflow)
	}
	m.put(key, strconv.FormatInt(cur+delta, 10), exp)
	return cur + delta, nil
}

// KVDelete implements Store.
func (m *Memory) KVDelete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e := m.entries[key]; e != nil {
		m.remove(e)
	}
	return nil
}

// live returns key's entry unless it is absent or expired at now (then
// it is removed); m.mu is held.
func (m *Memory) live(key string, now int64) *memEntry {
	e := m.entries[key]
	if e != nil && e.exp != 0 && e.exp <= now {
		m.remove(e)
		return nil
	}
	return e
}

// put sets key and keeps the bounds; m.mu is held and expired entries are
// gone.
func (m *Memory) put(key, value string, exp int64) {
	if e := m.entries[key]; e != nil {
		m.bytes += int64(len(value) - len(e.value))
		e.value, e.exp = value, exp
		heap.Fix(&m.byExp, e.index)
	} else {
		e = &memEntry{key: key, value: value, exp: exp}
		m.entries[key] = e
		heap.Push(&m.byExp, e)
		m.bytes += entrySize(e)
	}
	for len(m.entries) > m.maxEntries || m.bytes > m.maxBytes {
		m.remove(m.byExp[0])
		m.evicted++
	}
}

// expire removes the entries expired at now; m.mu is held.
func (m *Memory) expire(now int64) {
	for len(m.byExp) > 0 && m.byExp[0].exp != 0 && m.byExp[0].exp <= now {
		m.remove(m.byExp[0])
	}
}

func (m *Memory) remove(e *memEntry) {
	heap.Remove(&m.byExp, e.index)
	delete(m.entries, e.key)
	m.bytes -= entrySize(e)
}

func entrySize(e *memEntry) int64 { return int64(len(e.key) + len(e.value) + entryOverhead) }

// expiry is the Unix ns at which an entry written at now with ttl expires;
// 0 for no expiry.
func expiry(now int64, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	if now > math.MaxInt64-int64(ttl) {
		return math.MaxInt64
	}
	return now + int64(ttl)
}

// expiryHeap orders entries by expiry, those without one last.
type expiryHeap []*memEntry

func (h expiryHeap) Len() int { return len(h) }

func (h expiryHeap) Less(i, j int) bool { return sortExp(h[i].exp) < sortExp(h[j].exp) }

func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *expiryHeap) Push(x any) {
	e := x.(*memEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

func sortExp(exp int64) int64 {
	if exp == 0 {
		return math.MaxInt64
	}
	return exp
}
