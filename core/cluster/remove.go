package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// Removal of copies: a message that leaves the spool has its subjects
// (its copy's and its newer records', one filter: *.<node>.<id>) purged
// through the stream's API, which a full stream still accepts (a
// new message, such as a rollup marker, it would refuse), by a goroutine
// the Replica owns, without holding up the caller. A purge that fails
// (NATS away) is tried again every removeRetry until it succeeds or the
// Replica closes: a copy outlives its message only while NATS is away
// (or, after a Close with removals pending, until a takeover delivers it
// once more: a duplicate).
const (
	removeRetry     = time.Second
	removesInFlight = 16              // purges waiting for their answers at once
	closeDrain      = 2 * time.Second // what Close gives pending removals
)

// remover is a Replica's queue of removals and the goroutine that works
// it off.
type remover struct {
	c      *Conn
	prefix string // *.<node>.: a message's subjects are prefix+id

	mu      sync.Mutex
	pending []string // message IDs whose copies are to be purged
	// states are the newer records sent (Replica.Update) by message ID,
	// the last of each: a purge waits for its acknowledgement first, so
	// that the record does not land after the purge and stay for ever.
	states  map[string]jetstream.PubAckFuture
	stream  jetstream.Stream // the queue's stream, once looked up
	wake    chan struct{}
	closing chan struct{} // closed by close: drain, then return
	done    chan struct{} // closed when run returned
}

func newRemover(c *Conn, prefix string) *remover {
	rm := &remover{c: c, prefix: prefix, states: map[string]jetstream.PubAckFuture{}, wake: make(chan struct{}, 1),
		closing: make(chan struct{}), done: make(chan struct{})}
	go rm.run()
	return rm
}

// add queues the removal of id's copy.
func (rm *remover) add(id string) {
	rm.mu.Lock()
	rm.pending = append(rm.pending, id)
	rm.mu.Unlock()
	select {
	case rm.wake <- struct{}{}:
	default:
	}
}

// run purges the pending copies when woken, and every removeRetry while
// some failed, until close; then it gives those left closeDrain.
func (rm *remover) run() {
	defer close(rm.done)
	t := time.NewTicker(removeRetry)
	defer t.Stop()
	for {
		select {
		case <-rm.closing:
			rm.drain()
			return
		case <-rm.wake:
		case <-t.C:
		}
		rm.purgePending(context.Background()) // each purge within the connection's timeout
	}
}

// drain purges what is pending for up to closeDrain.
func (rm *remover) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), closeDrain)
	defer cancel()
	for rm.pendingCount() > 0 && ctx.Err() == nil {
		rm.purgePending(ctx)
		if rm.pendingCount() > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// purgePending purges every pending copy, removesInFlight at a time, and
// keeps those that failed pending.
func (rm *remover) purgePending(ctx context.Context) {
	rm.mu.Lock()
	ids := rm.pending
	rm.pending = nil
	rm.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	var failedMu sync.Mutex
	var failed []string
	var purges errgroup.Group
	purges.SetLimit(removesInFlight)
	for _, id := range ids {
		purges.Go(func() error {
			if err := rm.purge(ctx, id); err != nil {
				failedMu.Lock()
				failed = append(failed, id)
				failedMu.Unlock()
			}
			return nil // kept pending, tried again
		})
	}
	purges.Wait()
	if len(failed) > 0 {
		rm.c.log.Debug("cluster: copies not removed yet; trying again", "count", len(failed))
		rm.mu.Lock()
		rm.pending = append(failed, rm.pending...)
		rm.mu.Unlock()
	}
}

// stateSent records the future of a newer record of id, published.
func (rm *remover) stateSent(id string, f jetstream.PubAckFuture) {
	rm.mu.Lock()
	rm.states[id] = f
	rm.mu.Unlock()
}

// purge removes every message of id's subjects from the stream, once the
// last newer record sent for id is acknowledged (or failed).
func (rm *remover) purge(ctx context.Context, id string) error {
	if err := rm.c.ready(); err != nil {
		return err
	}
	ctx, cancel := rm.c.opContext(ctx)
	defer cancel()
	if err := rm.stateSettled(ctx, id); err != nil {
		return err
	}
	rm.mu.Lock()
	st := rm.stream
	rm.mu.Unlock()
	if st == nil {
		var err error
		if st, err = rm.c.js.Stream(ctx, QueueStream); err != nil {
			return err
		}
		rm.mu.Lock()
		rm.stream = st
		rm.mu.Unlock()
	}
	return st.Purge(ctx, jetstream.WithPurgeSubject(rm.prefix+id))
}

// stateSettled waits until the last newer record sent for id, if any, is
// acknowledged or failed, and forgets it.
func (rm *remover) stateSettled(ctx context.Context, id string) error {
	rm.mu.Lock()
	state := rm.states[id]
	rm.mu.Unlock()
	if state == nil {
		return nil
	}
	select {
	case <-state.Ok():
	case <-state.Err():
	case <-ctx.Done():
		return ctx.Err()
	}
	rm.mu.Lock()
	if rm.states[id] == state {
		delete(rm.states, id)
	}
	rm.mu.Unlock()
	return nil
}

// close lets the goroutine finish what it is purging and drain the rest
// (see run), and reports how many removals were left.
func (rm *remover) close() int {
	close(rm.closing)
	<-rm.done
	return rm.pendingCount()
}

func (rm *remover) pendingCount() int {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return len(rm.pending)
}
