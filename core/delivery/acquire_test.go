package delivery

import (
	"context"
	"testing"
	"time"
)

// TestAcquireSoon: an operation on one message waits out a lease that is
// no round in flight (the scheduler reading the record), and gives up at
// once on a round in flight. Before, an operator's retry that met the
// scheduler's look at the message was silently dropped
// (TestEngineAdmin/retry failed so in a CI run).
func TestAcquireSoon(t *testing.T) {
	e := &Engine{leases: map[string]*engineRound{}}
	e.leases["m1"] = nil // the scheduler is looking at it
	go func() {
		time.Sleep(10 * time.Millisecond)
		e.unlease("m1")
	}()
	if !e.acquireSoon(context.Background(), "m1") {
		t.Error("acquireSoon gave up on a lease that is only a look")
	}
	e.leases["m2"] = &engineRound{id: "m2"} // being delivered
	start := time.Now()
	if e.acquireSoon(context.Background(), "m2") {
		t.Error("acquireSoon took a message being delivered")
	}
	if d := time.Since(start); d > 5*time.Millisecond {
		t.Errorf("acquireSoon waited %v for a round in flight; want at once", d)
	}
}
