package authguard

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Limiter counts failed AUTH attempts per client network (Key) in a
// sliding window and locks a network out once it reaches the limit, the
// way fail2ban, Postfix's anvil and Dovecot's auth policy do. Attempts in
// progress count against the limit too, so that many parallel sessions
// from one network get no more checks than the limit between them. A nil
// *Limiter limits nothing.
type Limiter struct {
	limit  int
	window time.Duration // counting window and lockout length
	delay  time.Duration
	max    int // client networks remembered
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	clients map[netip.Prefix]*client
	swept   time.Time // the last sweep of expired clients
}

// client is what the limiter remembers of one network.
type client struct {
	failures []time.Time // within the window, oldest first; at most limit
	inFlight int         // attempts begun and not yet ended
	until    time.Time   // locked out until then
}

// NewLimiter returns a limiter for opt's FailureLimit, Lockout,
// FailureDelay, MaxClients, Now and Log, which must be set (New sets
// them).
func NewLimiter(opt Options) *Limiter {
	return &Limiter{
		limit:   opt.FailureLimit,
		window:  opt.Lockout,
		delay:   opt.FailureDelay,
		max:     opt.MaxClients,
		now:     opt.Now,
		log:     opt.Log,
		clients: make(map[netip.Prefix]*client),
	}
}

// Locked reports whether ip's network is locked out now.
func (l *Limiter) Locked(ip netip.Addr) bool {
	if l == nil {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.clients[Key(ip)]
	return c != nil && now.Before(c.until)
}

// Begin starts an attempt from ip: ErrLockedOut when its network is
// locked out, or when its failures in the window and its attempts in
// progress already reach the limit. The caller must end the attempt.
func (l *Limiter) Begin(ip netip.Addr) (*Attempt, error) {
	if l == nil {
		return nil, nil
	}
	now := l.now()
	key := Key(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= l.window {
		l.sweep(now)
	}
	c := l.clients[key]
	if c == nil {
		c = &client{}
		if !l.remember(key, c, now) {
			// Fail closed: an attempt nobody counts would be a way
			// round the limit for whoever filled the table (an IPv6
			// /48 holds 65,536 /64s).
			return nil, ErrLockedOut
		}
	}
	c.expire(now, l.window)
	if now.Before(c.until) || len(c.failures)+c.inFlight >= l.limit {
		return nil, ErrLockedOut
	}
	c.inFlight++
	return &Attempt{l: l, key: key, c: c}, nil
}

// remember adds c as key's client, first making room when the limiter
// remembers max networks already: expired ones go, else one with no
// failure in the window, none in progress and no lockout (forgetting a
// network with failures would wipe its count). It reports false when
// there is no room: every network remembered has failures, is locked out
// or is busy.
func (l *Limiter) remember(key netip.Prefix, c *client, now time.Time) bool {
	if len(l.clients) >= l.max {
		l.sweep(now)
	}
	if len(l.clients) >= l.max {
		for k, old := range l.clients {
			if old.inFlight == 0 && len(old.failures) == 0 && !now.Before(old.until) {
				delete(l.clients, k)
				break
			}
		}
	}
	if len(l.clients) >= l.max {
		return false
	}
	l.clients[key] = c
	return true
}

// sweep forgets the networks with nothing left to remember.
func (l *Limiter) sweep(now time.Time) {
	l.swept = now
	for k, c := range l.clients {
		c.expire(now, l.window)
		if len(c.failures) == 0 && c.inFlight == 0 && !now.Before(c.until) {
			delete(l.clients, k)
		}
	}
}

// expire drops the failures older than window.
func (c *client) expire(now time.Time, window time.Duration) {
	n := 0
	for n < len(c.failures) && now.Sub(c.failures[n]) >= window {
		n++
	}
	if n > 0 {
		c.failures = append(c.failures[:0], c.failures[n:]...)
	}
}

// fail records a failure at now and returns how many the window holds.
func (l *Limiter) fail(key netip.Prefix, c *client) int {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	c.inFlight--
	c.expire(now, l.window)
	c.failures = append(c.failures, now)
	n := len(c.failures)
	if n >= l.limit && !now.Before(c.until) {
		c.until = now.Add(l.window)
		l.log.Warn("authguard: client locked out", "client", key.String(),
			"failures", n, "for", l.window.String())
	}
	return n
}

// end ends an attempt that was no failure.
func (l *Limiter) end(c *client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.inFlight--
}

// Attempt is one AUTH attempt admitted by Begin. Its first Fail, Succeed
// or Abandon ends it; later calls do nothing. A nil *Attempt (from a nil
// Limiter) may be ended too.
type Attempt struct {
	l    *Limiter
	key  netip.Prefix
	c    *client
	done bool
}

// Fail records the attempt as a failure (wrong credentials) and returns
// how long the reply should wait: nothing for the first failure in the
// window, the limiter's delay for every later one.
func (a *Attempt) Fail() time.Duration {
	if a == nil || a.done {
		return 0
	}
	a.done = true
	if a.l.fail(a.key, a.c) > 1 {
		return a.l.delay
	}
	return 0
}

// Succeed ends a successful attempt. It does not forget earlier failures:
// otherwise one account the attacker owns would reset the count between
// guesses at the others.
func (a *Attempt) Succeed() { a.end() }

// Abandon ends an attempt that decided nothing (the check could not run,
// the client went away); it does not count.
func (a *Attempt) Abandon() { a.end() }

func (a *Attempt) end() {
	if a == nil || a.done {
		return
	}
	a.done = true
	a.l.end(a.c)
}
