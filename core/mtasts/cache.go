package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// maxEntries bounds the domains the memory cache holds. Past it, entries
// without a policy or with an expired one go first, then any (a policy
// dropped from memory is still in the Store).
const maxEntries = 10000

// storePrefix is the Store key of a domain's policy, before the domain.
const storePrefix = "gw:mta-sts:"

// cache is the memory in front of the Store: a domain present in it has
// had its Store entry read, so a delivery costs no disk read.
type cache struct {
	mu      sync.Mutex
	entries map[string]*entry
}

// entry is what the Client knows of one domain. Its fields change only
// under cache.mu; policy is never modified once set, only replaced.
type entry struct {
	policy  *Policy   // the last policy fetched or read from the Store; nil: none
	failID  string    // the TXT id whose fetch failed last
	failAt  time.Time // when
	failErr error     // and how
}

// entry returns domain's entry as a copy, reading the Store the first time
// the domain is asked for.
func (c *Client) entry(ctx context.Context, domain string) entry {
	c.cache.mu.Lock()
	e, ok := c.cache.entries[domain]
	if ok {
		defer c.cache.mu.Unlock()
		return *e
	}
	c.cache.mu.Unlock()

	p := c.load(ctx, domain)
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	if e, ok := c.cache.entries[domain]; ok {
		return *e // another caller came first
	}
	e = &entry{policy: p}
	c.insert(domain, e)
	return *e
}

// insert adds e under domain, making room first. Call with cache.mu held.
func (c *Client) insert(domain string, e *entry) {
	if _, ok := c.cache.entries[domain]; !ok && len(c.cache.entries) >= maxEntries {
		now := c.now()
		for d, old := range c.cache.entries {
			if old.policy == nil || old.policy.expired(now) {
				delete(c.cache.entries, d)
			}
		}
		for d := range c.cache.entries {
			if len(c.cache.entries) < maxEntries*9/10 {
				break
			}
			delete(c.cache.entries, d)
		}
	}
	c.cache.entries[domain] = e
}

// remember caches a policy just fetched, in memory and in the Store. A
// policy of max_age 0 is not stored (a TTL of 0 keeps a Store entry for
// ever); one the Store refuses stays in memory.
func (c *Client) remember(ctx context.Context, domain string, p *Policy) {
	c.cache.mu.Lock()
	c.insert(domain, &entry{policy: p})
	c.cache.mu.Unlock()
	if c.store == nil || p.MaxAge <= 0 {
		return
	}
	v, err := encodeStored(p)
	if err == nil {
		err = c.store.KVSet(ctx, storePrefix+domain, v, p.MaxAge)
	}
	if err != nil {
		c.log.WarnContext(ctx, "mtasts: policy not stored", "domain", domain, "err", err)
	}
}

// failed remembers that fetching domain's policy for the TXT id failed.
// An entry evicted meanwhile is not made again: it would hide the Store's.
func (c *Client) failed(domain, id string, err error) {
	now := c.now()
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	if e, ok := c.cache.entries[domain]; ok {
		e.failID, e.failAt, e.failErr = id, now, err
	}
}

// recentFailure returns the error of a fetch of domain's policy for the
// TXT id that failed less than retryAfter ago, or nil.
func (c *Client) recentFailure(domain, id string) error {
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	e, ok := c.cache.entries[domain]
	if !ok || e.failErr == nil || e.failID != id || !c.now().Before(e.failAt.Add(retryAfter)) {
		return nil
	}
	return e.failErr
}

// load reads domain's policy from the Store; nil when there is none or it
// cannot be read (which is logged: the policy is fetched again).
func (c *Client) load(ctx context.Context, domain string) *Policy {
	if c.store == nil {
		return nil
	}
	v, ok, err := c.store.KVGet(storePrefix+domain, c.now())
	if err != nil || !ok {
		if err != nil {
			c.log.WarnContext(ctx, "mtasts: stored policy not read", "domain", domain, "err", err)
		}
		return nil
	}
	p, err := decodeStored(v)
	if err != nil {
		c.log.WarnContext(ctx, "mtasts: stored policy not read", "domain", domain, "err", err)
		return nil
	}
	return p
}

// stored is a policy as the Store keeps it: the policy file as String
// writes it (so ParsePolicy checks what comes back from disk), its TXT id
// and when it was fetched.
type stored struct {
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Policy  string    `json:"policy"`
}

func encodeStored(p *Policy) (string, error) {
	b, err := json.Marshal(stored{ID: p.ID, Fetched: p.Fetched, Policy: p.String()})
	if err != nil {
		return "", fmt.Errorf("mtasts: encode policy: %w", err)
	}
	return string(b), nil
}

// decodeStored reads what encodeStored wrote.
func decodeStored(v string) (*Policy, error) {
	var s stored
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return nil, fmt.Errorf("mtasts: stored policy: %w", err)
	}
	if !validID(s.ID) || s.Fetched.IsZero() {
		return nil, errors.New("mtasts: stored policy: no id or fetch time")
	}
	p, err := ParsePolicy([]byte(s.Policy))
	if err != nil {
		return nil, fmt.Errorf("mtasts: stored policy: %w", err)
	}
	p.ID, p.Fetched = s.ID, s.Fetched
	return p, nil
}
