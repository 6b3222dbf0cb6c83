package mtasts

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mailgate/gateway/core/queue"
)

// TestPolicySurvivesRestart: a new Client over the same spool uses the
// stored policy without fetching it, until it expires.
func TestPolicySurvivesRestart(t *testing.T) {
	w := newWorld(t)
	const d = "stored.test"
	w.publish(d, page{body: policyBody(ModeEnforce, 86400, "mx.stored.test", "*.stored.test")}, "v=STSv1; id=s1")
	dir := t.TempDir()
	spool, err := queue.Open(dir, queue.Options{Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	first := mustPolicy(t, w.client(Options{Store: spool}), d)
	v, ok, err := spool.KVGet("gw:mta-sts:"+d, w.clock.Now())
	if err != nil || !ok {
		t.Fatalf("KVGet: %q, %v, %v", v, ok, err)
	}
	if err := spool.Close(); err != nil {
		t.Fatal(err)
	}

	w.setPage(d, page{status: 500}) // a fetch now would fail
	w.clock.Advance(time.Hour)
	spool, err = queue.Open(dir, queue.Options{Now: w.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spool.Close() })
	c := w.client(Options{Store: spool})
	again := mustPolicy(t, c, d)
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("policy after restart (-before +after):\n%s", diff)
	}
	if n := w.hitsOf(d); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}

	w.clock.Advance(86400 * time.Second) // past max_age: fetched again, and failing
	if _, err := w.client(Options{Store: spool}).Policy(context.Background(), d); FailureType(err) != "sts-policy-fetch-error" {
		t.Errorf("after max_age: error %v, want a fetch error", err)
	}
}

// TestPolicyMemoryBeforeStore: the Store is read once per domain, not per
// call, also for domains without a policy.
func TestPolicyMemoryBeforeStore(t *testing.T) {
	w := newWorld(t)
	w.publish("with.test", page{body: policyBody(ModeTesting, 600, "mx.with.test")}, "v=STSv1; id=1")
	store := newMapStore()
	c := w.client(Options{Store: store})
	for range 3 {
		mustPolicy(t, c, "with.test")
		mustPolicy(t, c, "without.test")
	}
	if n := store.gets(); n != 2 {
		t.Errorf("%d Store reads, want 2", n)
	}
	if n := store.sets(); n != 1 {
		t.Errorf("%d Store writes, want 1", n)
	}
	if ttl := store.ttl["gw:mta-sts:with.test"]; ttl != 600*time.Second {
		t.Errorf("Store TTL %v, want 10m", ttl)
	}
}

// TestPolicyBadStore: a Store that fails or holds garbage costs a fetch,
// never the delivery.
func TestPolicyBadStore(t *testing.T) {
	w := newWorld(t)
	const d = "badstore.test"
	w.publish(d, page{body: policyBody(ModeEnforce, 600, "mx.badstore.test")}, "v=STSv1; id=1")
	for _, tc := range []struct {
		name  string
		store *mapStore
	}{
		{"garbage", newMapStore().with("gw:mta-sts:"+d, `{"id":"1","fetched":"2026-01-01T00:00:00Z","policy":"mode: bogus"}`)},
		{"not JSON", newMapStore().with("gw:mta-sts:"+d, "\x00")},
		{"failing", &mapStore{m: map[string]string{}, ttl: map[string]time.Duration{}, err: errors.New("disk on fire")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPolicy(t, w.client(Options{Store: tc.store}), d)
			if p == nil || p.Mode != ModeEnforce {
				t.Errorf("policy %v", p)
			}
		})
	}
}

func TestDecodeStored(t *testing.T) {
	p := &Policy{Mode: ModeTesting, MX: []string{"a.example", "*.b.example"}, MaxAge: time.Hour, ID: "abc",
		Fetched: time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)}
	v, err := encodeStored(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"abc","fetched":"2026-12-06T18:00:00Z","policy":"version: STSv1\nmode: testing\nmx: a.example\nmx: *.b.example\nmax_age: 3600\n"}`
	if v != want {
		t.Errorf("encodeStored = %s, want %s", v, want)
	}
	back, err := decodeStored(v)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, back); diff != "" {
		t.Errorf("decodeStored (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "{}", `{"id":"abc","policy":"version: STSv1\nmode: none\nmax_age: 1\n"}`,
		`{"id":"a-b","fetched":"2026-12-06T18:00:00Z","policy":"version: STSv1\nmode: none\nmax_age: 1\n"}`} {
		if p, err := decodeStored(bad); err == nil {
			t.Errorf("decodeStored(%q) = %v, want an error", bad, p)
		}
	}
}

// mapStore is a Store in memory that counts its calls.
type mapStore struct {
	mu         sync.Mutex
	m          map[string]string
	ttl        map[string]time.Duration
	err        error
	nget, nset int
}

func newMapStore() *mapStore {
	return &mapStore{m: make(map[string]string), ttl: make(map[string]time.Duration)}
}

func (s *mapStore) with(k, v string) *mapStore { s.m[k] = v; return s }

func (s *mapStore) KVGet(key string, _ time.Time) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nget++
	if s.err != nil {
		return "", false, s.err
	}
	v, ok := s.m[key]
	return v, ok, nil
}

func (s *mapStore) KVSet(_ context.Context, key, value string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nset++
	if s.err != nil {
		return s.err
	}
	s.m[key], s.ttl[key] = value, ttl
	return nil
}

func (s *mapStore) gets() int { s.mu.Lock(); defer s.mu.Unlock(); return s.nget }
func (s *mapStore) sets() int { s.mu.Lock(); defer s.mu.Unlock(); return s.nset }

var _ Store = (*queue.Spool)(nil)

// TestCacheBound: the memory cache stays under maxEntries, dropping the
// domains without a valid policy first.
func TestCacheBound(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	c := New(Options{Now: func() time.Time { return now }})
	valid := &Policy{Mode: ModeEnforce, MaxAge: time.Hour, Fetched: now}
	expired := &Policy{Mode: ModeEnforce, MaxAge: time.Hour, Fetched: now.Add(-time.Hour)}
	for i := range maxEntries {
		var p *Policy
		switch i % 4 {
		case 0:
			p = valid
		case 1:
			p = expired
		} // else nil: no policy
		c.cache.entries[fmt.Sprintf("d%d.test", i)] = &entry{policy: p}
	}
	c.cache.mu.Lock()
	c.insert("d0.test", &entry{policy: valid}) // replacing makes no room
	c.cache.mu.Unlock()
	if n := len(c.cache.entries); n != maxEntries {
		t.Fatalf("%d entries after a replacement, want %d", n, maxEntries)
	}
	c.cache.mu.Lock()
	c.insert("new.test", &entry{policy: valid})
	c.cache.mu.Unlock()
	if n := len(c.cache.entries); n != maxEntries/4+1 {
		t.Errorf("%d entries, want the %d valid ones and the new one", n, maxEntries/4)
	}
	for d, e := range c.cache.entries {
		if e.policy != valid {
			t.Fatalf("%s kept with policy %v", d, e.policy)
		}
	}

	for i := range maxEntries { // all valid: some go, the new one stays
		c.cache.entries[fmt.Sprintf("v%d.test", i)] = &entry{policy: valid}
	}
	c.cache.mu.Lock()
	c.insert("newer.test", &entry{policy: valid})
	c.cache.mu.Unlock()
	if n := len(c.cache.entries); n > maxEntries*9/10+1 {
		t.Errorf("%d entries, want at most %d", n, maxEntries*9/10+1)
	}
	if _, ok := c.cache.entries["newer.test"]; !ok {
		t.Error("the new entry is not there")
	}
}
