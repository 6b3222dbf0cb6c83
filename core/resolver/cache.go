package resolver

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// cacheKey identifies one question. name is lower case and fully qualified.
type cacheKey struct {
	name  string
	qtype uint16
}

// entry is an authoritative answer (NOERROR or NXDOMAIN). Its slices are
// shared by every reader and never modified.
type entry struct {
	rcode   int
	answer  []dns.RR
	secure  bool      // the AD bit: the server validated the answer (or the denial) with DNSSEC
	expires time.Time // zero: not to be cached
}

// newEntry keeps what a look-up needs from resp and works out how long it may
// be cached: the smallest TTL in the answer section; for NXDOMAIN and NODATA
// (no record of the asked type), also the negative TTL of RFC 2308 §5 —
// min(SOA TTL, SOA MINIMUM) of the SOA in the authority section, or
// defaultNegativeTTL without one. Everything is capped at maxTTL; a TTL of 0
// is not cached.
func newEntry(resp *dns.Msg, now time.Time) *entry {
	e := &entry{rcode: resp.Rcode, answer: resp.Answer, secure: resp.AuthenticatedData}
	ttl := maxTTL
	for _, rr := range resp.Answer {
		ttl = min(ttl, seconds(rr.Header().Ttl))
	}
	if resp.Rcode == dns.RcodeNameError || !hasType(resp.Answer, resp.Question[0].Qtype) {
		neg := defaultNegativeTTL
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				neg = seconds(min(soa.Hdr.Ttl, soa.Minttl))
				break
			}
		}
		ttl = min(ttl, neg)
	}
	if ttl > 0 {
		e.expires = now.Add(ttl)
	}
	return e
}

func seconds(ttl uint32) time.Duration { return time.Duration(ttl) * time.Second }

func hasType(rrs []dns.RR, qtype uint16) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype {
			return true
		}
	}
	return false
}

// cache is a bounded LRU of answers. A nil *cache caches nothing.
type cache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of *cacheItem, most recently used first
	items map[cacheKey]*list.Element
}

type cacheItem struct {
	key cacheKey
	e   *entry
}

func newCache(size int) *cache {
	return &cache{max: size, order: list.New(), items: make(map[cacheKey]*list.Element)}
}

// get returns the unexpired entry for k.
func (c *cache) get(k cacheKey, now time.Time) (*entry, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil, false
	}
	it := el.Value.(*cacheItem)
	if !now.Before(it.e.expires) {
		c.order.Remove(el)
		delete(c.items, k)
		return nil, false
	}
	c.order.MoveToFront(el)
	return it.e, true
}

// put stores e under k unless it is not to be cached, evicting the least
// recently used entry when full.
func (c *cache) put(k cacheKey, e *entry) {
	if c == nil || e.expires.IsZero() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value.(*cacheItem).e = e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.items, old.Value.(*cacheItem).key)
	}
	c.items[k] = c.order.PushFront(&cacheItem{key: k, e: e})
}
