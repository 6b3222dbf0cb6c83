package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"
)

// heldAck is a part's acknowledgement that comes when the test says.
type heldAck struct{ ok chan *jetstream.PubAck }

func newHeldAck() heldAck                      { return heldAck{ok: make(chan *jetstream.PubAck, 1)} }
func (a heldAck) Ok() <-chan *jetstream.PubAck { return a.ok }
func (a heldAck) Err() <-chan error            { return nil }
func (a heldAck) Msg() *nats.Msg               { return nil }
func (a heldAck) acknowledge()                 { a.ok <- &jetstream.PubAck{} }

// reserveIn runs p.reserve(n) and reports whether it returned within d
// (it goes on after that; done is closed when it returns).
func reserveIn(t *testing.T, p *copyParts, n int64, d time.Duration) (returned bool, done chan struct{}) {
	t.Helper()
	done = make(chan struct{})
	go func() {
		defer close(done)
		if err := p.reserve(context.Background(), n); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
		return true, done
	case <-time.After(d):
		return false, done
	}
}

// TestCopyPartsBounds: a copy holds at most messageBudget of parts not yet
// acknowledged (the next part waits for its oldest), and all copies at most
// copyBudget (a copy that holds nothing waits for another's to settle).
func TestCopyPartsBounds(t *testing.T) {
	const part = 1 << 20
	r := &Replica{c: &Conn{timeout: time.Minute, progress: &progress{}}, budget: semaphore.NewWeighted(copyBudget)}
	fill := func() (*copyParts, []heldAck) {
		p := &copyParts{r: r, start: time.Now()}
		var acks []heldAck
		for range messageBudget / part {
			if ok, _ := reserveIn(t, p, part, time.Second); !ok {
				t.Fatalf("a part under the copy's budget waits (held %d)", p.bytes)
			}
			a := newHeldAck()
			p.add(a, part)
			acks = append(acks, a)
		}
		return p, acks
	}

	p, acks := fill()
	if ok, done := reserveIn(t, p, part, 100*time.Millisecond); ok {
		t.Fatalf("a part over the copy's budget of %d did not wait", messageBudget)
	} else {
		acks[0].acknowledge()
		<-done
	}
	if p.bytes != messageBudget-part {
		t.Errorf("after its oldest part settled the copy holds %d; want %d", p.bytes, messageBudget-part)
	}
	p.add(newHeldAck(), part)

	others := make([]*copyParts, copyBudget/messageBudget-1)
	var othersAcks [][]heldAck
	for i := range others {
		var a []heldAck
		others[i], a = fill()
		othersAcks = append(othersAcks, a)
	}
	late := &copyParts{r: r, start: time.Now()}
	ok, done := reserveIn(t, late, part, 100*time.Millisecond)
	if ok {
		t.Fatalf("a copy got memory with the node's %d all held", copyBudget)
	}
	for _, a := range othersAcks[0] {
		a.acknowledge()
	}
	if err := others[0].settleAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("a copy waiting for memory did not get it when another copy settled")
	}
}

// TestCopyWaitingForBudgetStalls: a copy that waits for the budget that
// other copies' parts hold fails with errStalled once the servers have
// acknowledged nothing for the timeout, rather than waiting for those
// copies to fail first (a timeout each, one after the other).
func TestCopyWaitingForBudgetStalls(t *testing.T) {
	const timeout = 300 * time.Millisecond
	r := &Replica{c: &Conn{timeout: timeout, progress: &progress{}}, budget: semaphore.NewWeighted(copyBudget)}
	if !r.budget.TryAcquire(copyBudget) { // the other copies' parts, never acknowledged
		t.Fatal("the budget is not free")
	}
	start := time.Now()
	err := (&copyParts{r: r, start: start}).reserve(context.Background(), 1<<20)
	took := time.Since(start)
	if !errors.Is(err, errStalled) {
		t.Fatalf("reserve = %v; want errStalled", err)
	}
	if took < timeout || took > 3*timeout {
		t.Errorf("reserve failed after %v; want about the %v timeout", took, timeout)
	}
}
