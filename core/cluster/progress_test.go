package cluster

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWhileProgress: a wait goes on past the timeout for as long as the
// servers acknowledge something within each timeout, and fails with
// errStalled about the timeout after their last acknowledgement; the
// caller's ctx still ends it at once.
func TestWhileProgress(t *testing.T) {
	const timeout = 500 * time.Millisecond // an acknowledgement every tenth of it, late under load
	c := &Conn{timeout: timeout, progress: &progress{}}
	waitFor := func(done <-chan struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	ackEvery := func(d, until time.Duration) {
		for end := time.Now().Add(until); time.Now().Before(end); time.Sleep(d) {
			c.progress.acked()
		}
	}

	done := make(chan struct{})
	go func() { ackEvery(timeout/10, 3*timeout); close(done) }()
	start := time.Now()
	if err := c.whileProgress(context.Background(), start, waitFor(done)); err != nil {
		t.Errorf("a wait of %v with an acknowledgement every %v failed after %v: %v", 3*timeout, timeout/10, time.Since(start), err)
	}

	start = time.Now()
	go ackEvery(timeout/10, 2*timeout)
	err := c.whileProgress(context.Background(), start, waitFor(nil))
	took := time.Since(start)
	if !errors.Is(err, errStalled) {
		t.Fatalf("a wait the servers stopped acknowledging ended with %v; want errStalled", err)
	}
	if took < 2*timeout || took > 2*timeout+timeout+timeout/2 {
		t.Errorf("a wait whose acknowledgements stopped after %v failed after %v; want about %v", 2*timeout, took, 3*timeout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.whileProgress(ctx, time.Now(), waitFor(nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("a wait whose ctx ended returned %v; want context.Canceled", err)
	}
}
