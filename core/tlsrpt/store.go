package tlsrpt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

const (
	keyPrefix    = "gw:tlsrpt:" // + "YYYY-MM-DD:" + domain
	keepFor      = 48 * time.Hour
	flushWorkers = 16 // concurrent writes per flush, for the spool's group commit
)

func storeKey(k dayDomain) string { return keyPrefix + k.day + ":" + k.domain }

// parseKey reads a key storeKey wrote; false for any other.
func parseKey(key string) (dayDomain, bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok || len(rest) < 12 || rest[10] != ':' {
		return dayDomain{}, false
	}
	if _, err := time.Parse(time.DateOnly, rest[:10]); err != nil {
		return dayDomain{}, false
	}
	return dayDomain{day: rest[:10], domain: rest[11:]}, true
}

// ttl is how long a day's counts stay in the store from now: until keepFor
// after the day's end, time to send and retry its report (§5.5).
func ttl(day string, now time.Time) time.Duration {
	start, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return 0
	}
	return start.Add(24*time.Hour + keepFor).Sub(now)
}

// flush writes the counts made since the last flush to the store.
func (r *Reporter) flush(ctx context.Context) error {
	r.storeMu.Lock()
	defer r.storeMu.Unlock()
	return r.flushLocked(ctx)
}

// flushLocked adds each domain's new counts to its stored day, several
// domains at a time so that the spool's group commit takes them in few
// transactions. Counts that could not be written wait for the next flush.
func (r *Reporter) flushLocked(ctx context.Context) error {
	r.mu.Lock()
	pending := r.pending
	r.pending = make(map[dayDomain]*counts)
	r.mu.Unlock()
	now := r.now()
	var g errgroup.Group
	g.SetLimit(flushWorkers)
	for k, c := range pending {
		g.Go(func() error {
			err := r.flushOne(ctx, k, c, now)
			if err != nil {
				r.keep(k, c)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("tlsrpt: flush: %w", err)
	}
	return nil
}

func (r *Reporter) flushOne(ctx context.Context, k dayDomain, c *counts, now time.Time) error {
	if ttl(k.day, now) <= 0 {
		return nil // a day past keeping: its report is gone
	}
	stored, err := r.load(k, now)
	if err != nil {
		return err
	}
	if !stored.merge(c) {
		r.log.Warn("tlsrpt: too many policies for one domain and day; some counts dropped", "domain", k.domain, "day", k.day)
	}
	return r.save(ctx, k, stored, now)
}

// keep puts counts that could not be written back with the pending ones.
func (r *Reporter) keep(k dayDomain, c *counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.pending[k]; p != nil {
		c.merge(p)
	}
	r.pending[k] = c
}

// load reads k's stored counts: empty ones when there are none, or when
// the stored value is unreadable (it is logged, and replaced at the save).
func (r *Reporter) load(k dayDomain, now time.Time) (*counts, error) {
	v, ok, err := r.store.KVGet(storeKey(k), now)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: %s: %w", storeKey(k), err)
	}
	if !ok {
		return &counts{}, nil
	}
	c, err := decodeCounts(v)
	if err != nil {
		r.log.Error("tlsrpt: stored counts unreadable; starting the day afresh", "key", storeKey(k), "err", err)
		return &counts{}, nil
	}
	return c, nil
}

func (r *Reporter) save(ctx context.Context, k dayDomain, c *counts, now time.Time) error {
	d := ttl(k.day, now)
	if d <= 0 {
		return nil
	}
	v, shed, err := c.encode()
	if err != nil {
		return err
	}
	if shed > 0 {
		r.log.Warn("tlsrpt: counts too big for the store; entries dropped", "key", storeKey(k), "dropped", shed)
	}
	return r.store.KVSet(ctx, storeKey(k), v, d)
}

func (r *Reporter) drop(ctx context.Context, k dayDomain) error {
	return r.store.KVDelete(ctx, storeKey(k))
}

// memStore is the Store of a Reporter given none: counts live as long as
// the process.
type memStore struct {
	now func() time.Time // the Reporter's clock
	mu  sync.Mutex
	m   map[string]memEntry
}

type memEntry struct {
	value string
	exp   time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, m: make(map[string]memEntry)}
}

func (s *memStore) KVGet(key string, now time.Time) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok || !now.Before(e.exp) {
		return "", false, nil
	}
	return e.value, true, nil
}

func (s *memStore) KVSet(ctx context.Context, key, value string, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("tlsrpt: memory store: ttl must be positive")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = memEntry{value: value, exp: s.now().Add(ttl)}
	return nil
}

func (s *memStore) KVDelete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *memStore) KVKeys(prefix string, now time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, e := range s.m {
		if strings.HasPrefix(k, prefix) && now.Before(e.exp) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
