package lua

import (
	"context"
	"fmt"
	"sync"
)

// pool is a Script's states: those idle, most recently used last, and a
// token for each state alive (idle or in a call), at most Options.Pool.
// A call takes the state used last, whose memory the CPU's caches are
// likely to hold still: a server with a few sessions at once keeps
// running on the same one or two states, not in turn on every state the
// pool ever made (as a first-in first-out queue would).
type pool struct {
	live chan struct{} // one token per state alive

	mu      sync.Mutex
	idle    []*state // ready for use; the most recently used last
	closed  bool
	waiting int           // calls of get waiting for a state
	wake    chan struct{} // (capacity 1) a state came back while some waited
}

func (p *pool) init(size int) {
	p.live = make(chan struct{}, size)
	p.wake = make(chan struct{}, 1)
	p.idle = make([]*state, 0, size)
}

// signal wakes one waiting get, or leaves a token the next waiter takes
// (which then looks again); p.mu is held.
func (p *pool) signal() {
	select {
	case p.wake <- struct{}{}:
	default: // a token is there already
	}
}

// Close drops the idle states; states in use are dropped when their call
// ends. Later Handle calls fail with ErrClosed.
func (s *Script) Close() {
	p := &s.pool
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.signal() // a waiting get sees closed
	p.mu.Unlock()
	for _, st := range idle {
		st.L.Close()
		<-p.live
	}
}

// get returns the idle state used last, or makes one if fewer than Pool
// are alive, or waits for one to come back.
func (s *Script) get(ctx context.Context) (*state, error) {
	p := &s.pool
	p.mu.Lock()
	for {
		if p.closed {
			if p.waiting > 0 {
				p.signal() // the others see it too
			}
			p.mu.Unlock()
			return nil, fmt.Errorf("%s: %w", s.name, ErrClosed)
		}
		if n := len(p.idle); n > 0 {
			st := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			if n > 1 && p.waiting > 0 {
				p.signal() // the next waiter takes another
			}
			p.mu.Unlock()
			return st, nil
		}
		p.waiting++
		p.mu.Unlock()
		made, done := false, false
		select {
		case p.live <- struct{}{}:
			made = true
		case <-p.wake:
		case <-ctx.Done():
			done = true
		}
		p.mu.Lock()
		p.waiting--
		switch {
		case made && p.closed:
			p.mu.Unlock()
			<-p.live
			return nil, fmt.Errorf("%s: %w", s.name, ErrClosed)
		case made:
			p.mu.Unlock()
			return s.made(ctx)
		case done:
			p.mu.Unlock()
			return nil, fmt.Errorf("%s: waiting for a state: %w", s.name, ctx.Err())
		}
	}
}

// made makes a state for get, which holds its token of p.live.
func (s *Script) made(ctx context.Context) (*state, error) {
	st, err := s.newState(ctx)
	if err != nil {
		<-s.pool.live
		return nil, err
	}
	return st, nil
}

// put returns st to the pool, or discards it if its call failed or the
// script is closed.
func (s *Script) put(st *state, ok bool) {
	p := &s.pool
	p.mu.Lock()
	if ok && !p.closed {
		p.idle = append(p.idle, st) // never grows: at most cap(live) states are alive
		if p.waiting > 0 {
			p.signal()
		}
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	st.L.Close()
	<-p.live
}
