package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The bytes of copies in flight: published, not yet acknowledged. The
// servers (and the sockets on the way) hold them meanwhile, and a part
// waits for those published before it, so a node's Commits could
// otherwise hand the servers every body they copy at once (a thousand
// 20 MB messages: 20 GB) and wait behind all of them. A copy has at most
// messageBudget of parts not yet acknowledged, and all of a node's copies
// copyBudget; a copy over either waits for its own oldest part's
// acknowledgement, so each makes progress as the servers answer. The
// record, the last part, is small and not counted. (The client keeps no
// part's data once written: publish drops it.)
const (
	copyBudget    = 64 << 20
	messageBudget = 8 << 20
)

// heldPart is a published part awaiting its acknowledgement, and the
// bytes of the budget it holds.
type heldPart struct {
	ack jetstream.PubAckFuture
	n   int64
}

// copyParts are one copy's parts in flight and its share of the budget.
type copyParts struct {
	r        *Replica
	start    time.Time  // when the copy began: its waits count from there at the earliest
	held     []heldPart // oldest first
	bytes    int64      // held by parts
	reserved int64      // taken for the part being read
}

// reserve takes n bytes of the budget for the next part, first waiting
// for the copy's own oldest parts while it is over messageBudget or the
// node's budget is spent; once the servers have been silent for the
// timeout, it fails.
func (p *copyParts) reserve(ctx context.Context, n int64) error {
	if err := p.r.c.stalled(p.start); err != nil {
		return err
	}
	for p.bytes+n > messageBudget && len(p.held) > 0 {
		if err := p.settleOldest(ctx); err != nil {
			return err
		}
	}
	for !p.r.budget.TryAcquire(n) {
		if len(p.held) == 0 {
			// Other copies' parts hold it.
			err := p.r.c.whileProgress(ctx, p.start, func(ctx context.Context) error {
				return p.r.budget.Acquire(ctx, n)
			})
			if err != nil {
				return fmt.Errorf("waiting for the other copies in flight: %w", err)
			}
			break
		}
		if err := p.settleOldest(ctx); err != nil {
			return err
		}
	}
	p.reserved = n
	return nil
}

// add attaches the reservation to ack, a part of used bytes, and gives
// the rest back.
func (p *copyParts) add(ack jetstream.PubAckFuture, used int64) {
	p.r.budget.Release(p.reserved - used)
	p.reserved = 0
	p.held = append(p.held, heldPart{ack: ack, n: used})
	p.bytes += used
}

// unreserve gives back the reservation that no part used.
func (p *copyParts) unreserve() {
	p.r.budget.Release(p.reserved)
	p.reserved = 0
}

// settleOldest waits for the oldest part's acknowledgement, while the
// servers make progress (progress.go), and gives its bytes back.
func (p *copyParts) settleOldest(ctx context.Context) error {
	h := p.held[0]
	if err := p.r.c.awaitAck(ctx, h.ack, p.start); err != nil {
		return err
	}
	p.held = p.held[1:]
	p.bytes -= h.n
	p.r.budget.Release(h.n)
	return nil
}

// settleAll waits for every part's acknowledgement.
func (p *copyParts) settleAll(ctx context.Context) error {
	for len(p.held) > 0 {
		if err := p.settleOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// releaseAll gives back what a failed copy holds: its parts the servers
// may still store, but the copy is not waiting for them any more.
func (p *copyParts) releaseAll() {
	p.r.budget.Release(p.reserved + p.bytes)
	p.held, p.bytes, p.reserved = nil, 0, 0
}
