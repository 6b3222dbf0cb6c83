// Package authguard guards SMTP AUTH against password guessing, for every
// listener of a gateway at once: a Limiter counts failed attempts per
// client network (an IPv4 address, an IPv6 /64) and locks a network out
// for a while after too many, and a Pool bounds how many password checks
// (bcrypt, which takes a core for tens of milliseconds) run at a time, so
// that guessing cannot starve the sessions that send mail.
//
// A session asks Locked before an exchange (a locked-out client is refused
// before it sends a password), Begin once it has the credentials, runs the
// check with Run, and ends the attempt with Fail, Succeed or Abandon. A
// nil *Guard admits everything and runs every check at once.
package authguard

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"runtime"
	"time"
)

// Errors of the guard; a session answers both with 454 4.7.0.
var (
	// ErrLockedOut is Begin's answer to a client that failed too often.
	ErrLockedOut = errors.New("authguard: too many authentication failures")
	// ErrBusy is Run's answer when no worker became free within MaxWait.
	ErrBusy = errors.New("authguard: no worker free for a password check")
)

// Defaults of the Options a gateway does not set from its config.
const (
	defaultMaxWait    = 5 * time.Second
	defaultMaxClients = 100_000
)

// Options configure a Guard. Zero values mean: no failure limit, no delay,
// GOMAXPROCS/2 workers (at least 1), a MaxWait of 5s, 100,000 clients.
type Options struct {
	// FailureLimit is how many failures a client network may have within
	// Lockout; the one that reaches it locks the network out for Lockout.
	// 0 counts nothing and locks nobody out.
	FailureLimit int
	// Lockout is both the window failures are counted in and how long a
	// lockout lasts, from the failure that started it.
	Lockout time.Duration
	// FailureDelay is how long the reply to a failure waits, for every
	// failure in the window but the first (a typo costs nothing), and the
	// reply to every attempt refused (Delay).
	FailureDelay time.Duration

	Workers int           // password checks at once
	MaxWait time.Duration // the longest a check waits for a worker

	// MaxClients bounds the client networks the limiter remembers. When
	// full, an idle one (no lockout, no attempt in progress) is forgotten
	// first; a flood of addresses costs memory only up to this.
	MaxClients int

	Now func() time.Time // nil = time.Now; tests use a fake clock
	Log *slog.Logger     // nil = discard
}

// Guard is a Limiter and a Pool, shared by every listener of a gateway.
type Guard struct {
	limiter *Limiter // nil without a failure limit
	pool    *Pool
}

// New returns a guard for opt.
func New(opt Options) *Guard {
	if opt.Workers <= 0 {
		opt.Workers = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = defaultMaxWait
	}
	if opt.MaxClients <= 0 {
		opt.MaxClients = defaultMaxClients
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{pool: NewPool(opt.Workers, opt.MaxWait)}
	if opt.FailureLimit > 0 && opt.Lockout > 0 {
		g.limiter = NewLimiter(opt)
	}
	return g
}

// Locked reports whether ip's network is locked out now.
func (g *Guard) Locked(ip netip.Addr) bool {
	return g != nil && g.limiter.Locked(ip)
}

// Begin starts an attempt to authenticate from ip, or returns
// ErrLockedOut (see Limiter.Begin).
func (g *Guard) Begin(ip netip.Addr) (*Attempt, error) {
	if g == nil {
		return nil, nil
	}
	return g.limiter.Begin(ip)
}

// Delay is how long the reply to a refused attempt (ErrLockedOut) waits:
// the limiter's FailureDelay, so that a guesser who reconnects at once
// still makes few attempts a second, each costing next to nothing.
func (g *Guard) Delay() time.Duration {
	if g == nil || g.limiter == nil {
		return 0
	}
	return g.limiter.delay
}

// Run runs check on a worker of the pool (see Pool.Run).
func (g *Guard) Run(ctx context.Context, check func()) error {
	if g == nil {
		check()
		return nil
	}
	return g.pool.Run(ctx, check)
}

// Key is the client network ip counts for: the address itself for IPv4
// (an IPv4-mapped IPv6 address too), its /64 for IPv6, where one
// subscriber commonly holds a whole /64. The zero Addr has the zero key.
func Key(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		return netip.PrefixFrom(ip, 32)
	case ip.Is6():
		return netip.PrefixFrom(ip.WithZone(""), 64).Masked()
	}
	return netip.Prefix{}
}
