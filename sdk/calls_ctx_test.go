package sdk

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCallCtx: a call's context ends by its deadline (seen through Err
// without a timer, or through Done with one) or by cancel, once, and
// keeps the context contract (Done closed exactly when Err is set; Cause
// is Err; children end with it).
func TestCallCtx(t *testing.T) {
	soon := func() time.Time { return time.Now().Add(20 * time.Millisecond) }
	tests := []struct {
		name     string
		deadline func() time.Time
		done     bool // ask for Done before the end
		end      func(c *callCtx)
		want     error
	}{
		{"deadline seen by Err", soon, false, func(*callCtx) { time.Sleep(40 * time.Millisecond) }, context.DeadlineExceeded},
		{"deadline seen by Done", soon, true, func(c *callCtx) { <-c.Done() }, context.DeadlineExceeded},
		{"past deadline", func() time.Time { return time.Now().Add(-time.Second) }, false, func(*callCtx) {}, context.DeadlineExceeded},
		{"past deadline, Done", func() time.Time { return time.Now().Add(-time.Second) }, true, func(*callCtx) {}, context.DeadlineExceeded},
		{"cancel", func() time.Time { return time.Time{} }, false, (*callCtx).cancel, context.Canceled},
		{"cancel, Done", func() time.Time { return time.Time{} }, true, (*callCtx).cancel, context.Canceled},
		{"cancel before deadline", func() time.Time { return time.Now().Add(time.Hour) }, true, (*callCtx).cancel, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.deadline()
			c := newCallCtx(d)
			if got, ok := c.Deadline(); !got.Equal(d) || ok != !d.IsZero() {
				t.Errorf("Deadline() = %v, %v; want %v, %v", got, ok, d, !d.IsZero())
			}
			var child context.Context
			if tt.done {
				var stop context.CancelFunc
				child, stop = context.WithCancel(c)
				defer stop()
			} else if c.Err() == nil && c.timer != nil {
				t.Error("a timer started before anything asked for Done")
			}
			tt.end(c)
			if err := c.Err(); !errors.Is(err, tt.want) {
				t.Errorf("Err() = %v, want %v", err, tt.want)
			}
			c.cancel() // a second end changes nothing
			if err := c.Err(); !errors.Is(err, tt.want) {
				t.Errorf("Err() after cancel = %v, want %v", err, tt.want)
			}
			if err := context.Cause(c); !errors.Is(err, tt.want) {
				t.Errorf("Cause() = %v, want %v", err, tt.want)
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("Done not closed after the end")
			}
			if child != nil {
				select {
				case <-child.Done():
				case <-time.After(5 * time.Second):
					t.Fatal("a child did not end with its parent")
				}
			}
		})
	}
}

// TestCallCtxRunning: a running call's context has no error and an open
// Done.
func TestCallCtxRunning(t *testing.T) {
	c := newCallCtx(time.Now().Add(time.Hour))
	defer c.cancel()
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
	select {
	case <-c.Done():
		t.Error("Done closed while running")
	default:
	}
	if v := c.Value("k"); v != nil {
		t.Errorf("Value = %v, want nil", v)
	}
}
