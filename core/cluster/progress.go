package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The servers' progress on the node's asynchronous publishes (the parts
// of its copies, their newer records), which decides when a copy has
// waited too long. A part waits for the parts of every copy the node
// published before it: up to copyBudget of them, which at 10 MiB a
// second is over 6 s, longer than the connection's timeout, while the
// servers answer steadily. So a copy's wait fails only once the servers
// have acknowledged none of the node's publishes for the timeout: a
// stall, not a queue. (Only the publishes before it would be exact, but
// the servers answer them a little out of order: numbered as they were
// published, some came after a later one.)
//
// The client's own timeout of each publish, publishCeiling, bounds a
// part whose answer was lost while the others' come: 64 MiB ahead of it
// at half a MiB a second.
const publishCeiling = 2 * time.Minute

// errStalled is a copy's wait ended by the servers' silence.
var errStalled = fmt.Errorf("%w: the servers acknowledged none of the node's copies for the timeout (are most of them down, or cut off from each other?)",
	jetstream.ErrAsyncPublishTimeout)

// progress is when the servers last acknowledged a publish of the node's.
type progress struct {
	mu   sync.Mutex
	last time.Time
}

// acked records an acknowledgement, now.
func (p *progress) acked() {
	p.mu.Lock()
	p.last = time.Now()
	p.mu.Unlock()
}

// since is the last acknowledgement's time if it is after t, else t.
func (p *progress) since(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.After(t) {
		return p.last
	}
	return t
}

// stalled is errStalled once the servers have acknowledged nothing for
// the timeout since since: a copy that has been that long publishing
// (a publish waits while the servers do not read) publishes no more.
func (c *Conn) stalled(since time.Time) error {
	if time.Since(c.progress.since(since)) > c.timeout {
		return errStalled
	}
	return nil
}

// whileProgress calls wait with a ctx that ends the connection's timeout
// after since, and again, the timeout after the servers' last
// acknowledgement, for as long as there is one since the last call: it
// returns wait's error, or errStalled once the servers acknowledged
// nothing for the timeout.
func (c *Conn) whileProgress(ctx context.Context, since time.Time, wait func(context.Context) error) error {
	for {
		wctx, cancel := context.WithDeadline(ctx, since.Add(c.timeout))
		err := wait(wctx)
		expired := wctx.Err() != nil
		cancel()
		if err == nil || !expired || ctx.Err() != nil {
			return err
		}
		last := c.progress.since(since)
		if !last.After(since) {
			return errStalled
		}
		since = last
	}
}

// awaitAck waits for ack while the servers make progress since since
// (whileProgress).
func (c *Conn) awaitAck(ctx context.Context, ack jetstream.PubAckFuture, since time.Time) error {
	return c.whileProgress(ctx, since, func(wctx context.Context) error {
		select {
		case <-ack.Ok():
			return nil
		case err := <-ack.Err():
			return explain(err)
		case <-wctx.Done():
		}
		select {
		case <-ack.Ok(): // came as the wait ended
			return nil
		default:
			return fmt.Errorf("waiting for the servers: %w", wctx.Err())
		}
	})
}
