// Package workers runs functions on goroutines it keeps for reuse, so that
// a piece of work starts on a goroutine whose stack has already grown to
// what such work needs. A new goroutine starts with a small stack and
// copies it each time it doubles: a delivery attempt, which runs deep
// (engine, transport, SMTP client, TLS), paid about 4% of the gateway's
// CPU in relaying for growing a fresh stack in every job.
package workers

import "sync"

// Pool runs functions on goroutines kept idle between them, up to a
// number. Its creator calls Close, which ends the idle ones; a busy one
// ends when its function returns. Safe for concurrent use.
type Pool struct {
	maxIdle int

	mu     sync.Mutex
	idle   []chan func() // the idle workers, the latest to finish last
	closed bool
}

// New returns a pool that keeps at most maxIdle goroutines idle.
func New(maxIdle int) *Pool { return &Pool{maxIdle: maxIdle} }

// Go runs f on an idle goroutine, the one that finished last (its stack
// is the most likely to be still grown and in the CPU's caches), or on a
// new one when none is idle.
func (p *Pool) Go(f func()) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w <- f // buffered: never waits
		return
	}
	p.mu.Unlock()
	go p.work(make(chan func(), 1), f)
}

// work runs f, and then what Go hands it while it is kept idle.
func (p *Pool) work(w chan func(), f func()) {
	for f != nil {
		f()
		if !p.park(w) {
			return
		}
		f = <-w // nil once Close closed w
	}
}

// park puts w among the idle workers, unless the pool is closed or has
// as many as it keeps.
func (p *Pool) park(w chan func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) >= p.maxIdle {
		return false
	}
	p.idle = append(p.idle, w)
	return true
}

// Idle is how many goroutines wait for work.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Close ends the idle goroutines and keeps none from now on: Go still
// runs functions, each on a goroutine of its own that ends with it.
func (p *Pool) Close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, w := range idle {
		close(w)
	}
}
