package cluster

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// The memory of copies in flight: the client keeps each part of a copy
// until the servers acknowledge it, so a node's Commits could otherwise
// hold every body they copy at once (a thousand 20 MB messages: 20 GB).
// A copy holds at most messageBudget of parts not yet acknowledged, and
// all of a node's copies copyBudget; a copy over either waits for its own
// oldest part's acknowledgement, so each makes progress as the servers
// answer. The record, the last part, is small and not counted.
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
	held     []heldPart // oldest first
	bytes    int64      // held by parts
	reserved int64      // taken for the part being read
}

// reserve takes n bytes of the budget for the next part, first waiting
// for the copy's own oldest parts while it is over messageBudget or the
// node's budget is spent.
func (p *copyParts) reserve(ctx context.Context, n int64) error {
	for p.bytes+n > messageBudget && len(p.held) > 0 {
		if err := p.settleOldest(ctx); err != nil {
			return err
		}
	}
	for !p.r.budget.TryAcquire(n) {
		if len(p.held) == 0 {
			if err := p.r.budget.Acquire(ctx, n); err != nil {
				return fmt.Errorf("waiting for memory for the copy: %w", err)
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

// settleOldest waits for the oldest part's acknowledgement and gives its
// bytes back.
func (p *copyParts) settleOldest(ctx context.Context) error {
	h := p.held[0]
	select {
	case <-h.ack.Ok():
	case err := <-h.ack.Err():
		return explain(err)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the servers: %w", ctx.Err())
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

// releaseAll gives back what a failed copy holds: the client drops its
// parts when their acknowledgements fail or time out (the connection's
// timeout), so the budget may run ahead of memory that long.
func (p *copyParts) releaseAll() {
	p.r.budget.Release(p.reserved + p.bytes)
	p.held, p.bytes, p.reserved = nil, 0, 0
}
