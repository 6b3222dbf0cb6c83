package hook

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailgate/gateway/sdk"
)

// waitClosed fails t unless ch is closed within a few seconds.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: Done not closed", what)
	}
}

// TestDeadlineWithoutTimer checks that a deadline nobody waits on still
// ends: Err turns to DeadlineExceeded when the time has come.
func TestDeadlineWithoutTimer(t *testing.T) {
	d := withTimeout(context.Background(), 20*time.Millisecond)
	defer d.stop()
	if err := d.Err(); err != nil {
		t.Fatalf("Err before the deadline = %v, want nil", err)
	}
	if at, ok := d.Deadline(); !ok || time.Until(at) > 20*time.Millisecond {
		t.Fatalf("Deadline = %v, %v", at, ok)
	}
	time.Sleep(30 * time.Millisecond)
	if err := d.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err after the deadline = %v, want DeadlineExceeded", err)
	}
	if d.timed.Load() != nil {
		t.Fatal("Err started a timer")
	}
	waitClosed(t, d.Done(), "Done asked after the deadline")
}

// TestDeadlineDone checks that Done closes at the deadline.
func TestDeadlineDone(t *testing.T) {
	d := withTimeout(context.Background(), 20*time.Millisecond)
	defer d.stop()
	start := time.Now()
	waitClosed(t, d.Done(), "deadline")
	if time.Since(start) < 15*time.Millisecond {
		t.Errorf("Done closed after %v, before the deadline", time.Since(start))
	}
	if err := d.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Err = %v, want DeadlineExceeded", err)
	}
}

// TestDeadlineParent checks that the parent's cancellation and earlier
// deadline reach the handler's context, with a timer and without.
func TestDeadlineParent(t *testing.T) {
	for _, waited := range []bool{false, true} {
		parent, cancel := context.WithCancel(context.Background())
		d := withTimeout(parent, time.Hour)
		var done <-chan struct{}
		if waited {
			done = d.Done()
		}
		cancel()
		if waited {
			waitClosed(t, done, "parent cancelled")
		}
		if err := d.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("waited %v: Err after the parent's cancel = %v, want Canceled", waited, err)
		}
		d.stop()
	}

	parent, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pd, _ := parent.Deadline()
	d := withTimeout(parent, time.Hour)
	defer d.stop()
	if at, _ := d.Deadline(); !at.Equal(pd) {
		t.Errorf("Deadline = %v, want the parent's %v", at, pd)
	}
}

// TestDeadlineStop checks that a stopped deadline is cancelled, whether
// its Done was asked before or after, and that a context derived from it
// ends with it.
func TestDeadlineStop(t *testing.T) {
	d := withTimeout(context.Background(), time.Hour)
	child, cancel := context.WithCancel(d)
	defer cancel()
	d.stop()
	waitClosed(t, child.Done(), "child of a stopped deadline")
	if err := d.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after stop = %v, want Canceled", err)
	}

	d = withTimeout(context.Background(), time.Hour)
	d.stop()
	if err := d.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after stop without a timer = %v, want Canceled", err)
	}
	waitClosed(t, d.Done(), "Done asked after stop")
}

// TestChainDeadlineWithoutDone checks that a handler that never waits on
// Done but looks at Err is held to its timeout, and that an answer given
// after the timeout takes the on_error path.
func TestChainDeadlineWithoutDone(t *testing.T) {
	spin := handlerFunc(func(ctx context.Context, r *Request) error {
		for ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		return ctx.Err()
	})
	late := handlerFunc(func(ctx context.Context, r *Request) error {
		time.Sleep(30 * time.Millisecond)
		return nil
	})
	for name, h := range map[string]Handler{"spin": spin, "late": late} {
		c := NewChain(nil, Entry{Handler: h, Timeout: 10 * time.Millisecond, OnError: OnErrorReject})
		res := c.Dispatch(context.Background(), &Request{Stage: sdk.StageRcpt})
		if res.Decision.Code != 554 || !strings.Contains(res.Decision.Reason, "deadline exceeded") {
			t.Errorf("%s: decision %+v, want the on_error reject for the deadline", name, res.Decision)
		}
	}
}

// handlerFunc is a Handler that accepts unless f fails.
type handlerFunc func(ctx context.Context, r *Request) error

func (f handlerFunc) Name() string { return "f" }

func (f handlerFunc) Handle(ctx context.Context, r *Request) (sdk.Decision, sdk.Effects, error) {
	if err := f(ctx, r); err != nil {
		return sdk.Decision{}, sdk.Effects{}, err
	}
	return sdk.AcceptDecision(), sdk.Effects{}, nil
}
