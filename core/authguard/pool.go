package authguard

import (
	"context"
	"fmt"
	"time"
)

// Pool bounds how many password checks run at once. A check runs on its
// caller's goroutine once it holds one of the pool's worker slots, so the
// pool owns no goroutine and needs no stop; a caller waits for a slot at
// most maxWait, in arrival order as far as the runtime keeps it.
type Pool struct {
	slots   chan struct{}
	maxWait time.Duration
}

// NewPool returns a pool of workers slots (at least 1) whose callers wait
// at most maxWait for one.
func NewPool(workers int, maxWait time.Duration) *Pool {
	return &Pool{slots: make(chan struct{}, max(1, workers)), maxWait: maxWait}
}

// Run runs check once a worker slot is free: ErrBusy when none was within
// maxWait, ctx's error when it ended first; check did not run then.
func (p *Pool) Run(ctx context.Context, check func()) error {
	select {
	case p.slots <- struct{}{}:
	default:
		t := time.NewTimer(p.maxWait)
		defer t.Stop()
		select {
		case p.slots <- struct{}{}:
		case <-t.C:
			return ErrBusy
		case <-ctx.Done():
			return fmt.Errorf("authguard: waiting for a worker: %w", ctx.Err())
		}
	}
	defer func() { <-p.slots }()
	check()
	return nil
}
