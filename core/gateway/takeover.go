package gateway

// The takeover of a silent node's queue (issue 13). Every node with a
// cluster block looks, once per heartbeat period, for nodes whose last
// heartbeat is older than takeover_after; the one that creates the claim
// on such a node's queue (cluster.Nodes.TryClaim: exactly one can) imports
// each of its copies into its own spool (queue.Spool.Import: durable and
// copied under this node before the other's copy is removed) and then
// removes the other's copy. A node that comes back first writes a
// heartbeat, then, when its queue was claimed, deletes from its spool
// every message whose copy is gone (taken over, or finished) before its
// engine starts, and clears the claim: it delivers nothing that was taken
// from it (a takeover under way is waited for). A node that was only cut
// off from NATS does the same when its heartbeats come back, through its
// engine. A copy imported and not yet removed when the taker died, or a
// message the silent node (cut off, not dead) delivered meanwhile, is
// delivered twice: a duplicate, never a loss.

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/queue"
)

// takeovers looks for silent nodes every heartbeat period until ctx ends;
// a part of Run with a cluster block.
func (g *Gateway) takeovers(ctx context.Context) {
	t := time.NewTicker(cluster.HeartbeatEvery(g.cfg.Cluster.TakeoverAfter))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.takeOverSilent(ctx, time.Now())
	}
}

// takeOverSilent claims, and takes over, the queue of every other node
// silent at now for longer than takeover_after.
func (g *Gateway) takeOverSilent(ctx context.Context, now time.Time) {
	cfg := g.cfg.Cluster
	list, err := g.nodes.List(ctx)
	if err != nil {
		g.log.Debug("cluster: cannot list the nodes", "err", err)
		return
	}
	silent := func(node string) bool {
		for _, n := range list {
			if n.Node == node {
				return now.Sub(n.Heartbeat) > cfg.TakeoverAfter
			}
		}
		return true // no heartbeat at all
	}
	for _, n := range list {
		if n.Node == cfg.Node || !silent(n.Node) {
			continue
		}
		claim := &cluster.Claim{Node: n.Node, By: cfg.Node, At: now, Silence: n.Heartbeat}
		won, err := g.claim(ctx, claim, silent)
		if err != nil {
			g.log.Warn("cluster: cannot claim a silent node's queue", "node", n.Node, "err", err)
		}
		if won {
			g.takeOver(ctx, claim, now.Sub(n.Heartbeat))
		}
	}
}

// claim claims c's node's queue for this node: a new claim, or one that
// is not done while its taker is silent (it died half way) or is this
// node (it stopped half way, or some copies failed).
func (g *Gateway) claim(ctx context.Context, c *cluster.Claim, silent func(node string) bool) (bool, error) {
	won, err := g.nodes.TryClaim(ctx, c)
	if won || err != nil {
		return won, err
	}
	old, claimed, err := g.nodes.ClaimOn(ctx, c.Node)
	if err != nil || !claimed || old.Done || old.By != c.By && !silent(old.By) {
		return false, err
	}
	g.log.Warn("cluster: the takeover of a silent node's queue was left half way; taking it up", "node", c.Node, "by", old.By)
	return g.nodes.Reclaim(ctx, old, c)
}

// takeOver imports the queue of the claim's node and records the claim
// done once every copy was read (copies that could not be imported stay
// on the stream for that node, and are logged).
func (g *Gateway) takeOver(ctx context.Context, c *cluster.Claim, silence time.Duration) {
	g.log.Warn("cluster: taking over the queue of a silent node", "node", c.Node, "silent_for", silence.Round(time.Second))
	count, failed, err := g.importQueue(ctx, c.Node)
	if err != nil {
		g.log.Error("cluster: takeover stopped; it goes on at the next look for silent nodes", "node", c.Node, "taken", count, "err", err)
		return
	}
	g.takeoverCount.Add(1)
	if err := g.nodes.ClaimDone(ctx, *c); err != nil {
		g.log.Warn("cluster: takeover done, but not recorded", "node", c.Node, "err", err)
	}
	if failed > 0 {
		g.log.Error("cluster: copies of a silent node's queue could not be imported; they stay on the stream for that node",
			"node", c.Node, "count", failed)
	}
	g.log.Warn("cluster: took over the queue of a silent node", "node", c.Node, "messages", count)
}

// importQueue imports every copy of node's queue into this spool and
// removes each copy once its message is durable here; it returns how many
// it imported, and how many it could not import (those are logged and
// stay on the stream). Up to importers imports run at once, so that their
// commits share the spool's fsyncs and their copies' acknowledgements
// overlap. Its error is reading the copies'.
func (g *Gateway) importQueue(ctx context.Context, node string) (n, failed int, err error) {
	theirs := g.cluster.ReplicaOf(node)
	defer theirs.Close()
	var mu sync.Mutex
	var imports errgroup.Group
	imports.SetLimit(importers)
	err = g.cluster.Copies(ctx, node, func(cp cluster.Copy) bool {
		imports.Go(func() error {
			id, err := g.spool.Import(ctx, cp.Record, cp.Body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				g.log.Error("cluster: a copy could not be imported; it stays on the stream", "node", node, "from_id", cp.ID, "err", err)
				return nil // the others go on
			}
			theirs.Remove(cp.ID)
			g.takenOver.Add(1)
			n++
			g.log.Info("cluster: message taken over", "node", node, "from_id", cp.ID, "id", id)
			return nil
		})
		return ctx.Err() == nil
	})
	imports.Wait()
	if n > 0 {
		g.engine.Kick()
	}
	return n, failed, err
}

// importers is how many imports a takeover runs at once.
const importers = 32

// reconcile runs at start, before the engine, with a cluster block: it
// writes a first heartbeat (so that no node claims this one's queue while
// it starts), drops what was taken from this node while it was away, and
// copies what has no copy yet (copyMissing).
// A takeover still under way is waited for (the taker goes on removing
// copies it imports), with a heartbeat a second, up to twice
// takeover_after from when it is first seen: a taker that died half-way
// leaves its claim undone. A round that JetStream cannot take for the
// moment (a stream electing its leader: cluster.Transient) is tried again
// every second, for up to twice takeover_after since the last round it
// took; meanwhile this node writes no heartbeat, and another may claim
// its queue, which is then waited for as above.
func (g *Gateway) reconcile(ctx context.Context) error {
	wait := 2 * g.cfg.Cluster.TakeoverAfter
	answered := time.Now() // the last round JetStream took (or the start)
	var takeover time.Time // when a takeover under way was first seen
	for warned := false; ; {
		anyway := !takeover.IsZero() && time.Since(takeover) > wait
		done, err := g.reconcileOnce(ctx, anyway)
		switch {
		case err != nil && (!cluster.Transient(err) || time.Since(answered) > wait):
			return err
		case err != nil && !warned:
			g.log.Warn("cluster: JetStream did not answer at start; trying again every second", "err", err)
			warned = true
		case err != nil: // warned already: try again
		case done:
			return nil
		case takeover.IsZero():
			g.log.Warn("cluster: another node is taking this node's queue over; waiting for it to finish before delivering")
			takeover = time.Now()
		}
		if err == nil {
			answered = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// reconcileOnce is one round of reconcile: the messages without a copy
// marked if no claim is there (markUnclaimed), a heartbeat, then, unless
// a takeover is under way (and not anyway), what was taken dropped and
// what has no copy copied, which it reports as done.
func (g *Gateway) reconcileOnce(ctx context.Context, anyway bool) (bool, error) {
	missing, unclaimed, err := g.markUnclaimed(ctx)
	if err != nil {
		return false, err
	}
	if err := g.nodes.Beat(ctx, g.status()); err != nil {
		return false, err
	}
	done, err := g.dropTaken(ctx, g.spool.Delete, anyway)
	if err != nil || !done {
		return false, err
	}
	if !unclaimed { // what was taken is dropped: what is left without a copy is marked
		if missing, err = g.takenFrom(ctx, g.cfg.Cluster.Node); err != nil {
			return false, err
		}
	}
	err = g.copyMissing(ctx, missing)
	return err == nil, err
}

// dropTaken, when this node's queue was claimed (while it was away, or
// cut off from NATS), removes from the spool, with remove, every message
// whose copy is gone (taken over, or finished), then clears the claim,
// and reports true; it reports false, and does nothing, while the
// takeover is under way (unless anyway). At start remove is the spool's
// Delete; while running it is the engine's Remove, which waits for a
// delivery in progress, and a message it cannot remove (busy) stays: a
// duplicate, never a loss.
func (g *Gateway) dropTaken(ctx context.Context, remove func(context.Context, string) error, anyway bool) (bool, error) {
	me := g.cfg.Cluster.Node
	claim, claimed, err := g.nodes.ClaimOn(ctx, me)
	if err != nil || !claimed {
		return err == nil, err
	}
	if !claim.Done && !anyway {
		return false, nil
	}
	gone, err := g.takenFrom(ctx, me)
	if err != nil {
		return false, err
	}
	marks, err := g.spool.KVKeys(uncopiedPrefix, time.Now())
	if err != nil {
		return false, err
	}
	uncopied := make(map[string]bool, len(marks))
	for _, key := range marks {
		uncopied[key] = true
	}
	kept := 0
	for i, id := range gone {
		if uncopied[uncopiedPrefix+id] {
			kept++ // never copied (markUncopied), so never taken
			continue
		}
		if err := remove(ctx, id); err != nil && !errors.Is(err, queue.ErrNotFound) {
			g.log.Warn("cluster: a message taken over stays here", "id", id, "err", err)
			kept++
		}
		if i%dropBeat == dropBeat-1 {
			g.nodes.Beat(ctx, g.status()) // a long drop must not look like silence
		}
	}
	g.log.Warn("cluster: this node's queue was taken over while it was away; what was taken is not delivered here",
		"by", claim.By, "at", claim.At, "done", claim.Done, "removed", len(gone)-kept, "kept", g.spool.Len())
	return true, g.nodes.ClearClaim(ctx, me)
}

// dropBeat is how many messages dropTaken removes between heartbeats.
const dropBeat = 256

// takenFrom lists the messages of this spool whose copies under node are
// gone from the stream. The spool is listed first: a message committed
// since has its copy (Commit writes it first), so it is never taken for
// gone.
func (g *Gateway) takenFrom(ctx context.Context, node string) ([]string, error) {
	var ids []string
	if err := g.spool.List(func(m *queue.Message) bool { ids = append(ids, m.ID); return true }); err != nil {
		return nil, err
	}
	live, err := g.cluster.LiveIDs(ctx, node)
	if err != nil {
		return nil, err
	}
	gone := ids[:0]
	for _, id := range ids {
		if !live[id] {
			gone = append(gone, id)
		}
	}
	return gone, nil
}

// copyMissing copies ids, messages of the spool that have no copy on the
// stream (queued before this node had a cluster block), at start, once
// what was taken from this node is dropped: every message of a node's
// spool then has its copy, and a takeover misses none. Each is marked
// uncopied (markUnclaimed) until its copy is made.
func (g *Gateway) copyMissing(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	var copies errgroup.Group
	copies.SetLimit(importers) // copies at once, as a takeover imports
	for _, id := range ids {
		copies.Go(func() error {
			if err := g.spool.Replicate(ctx, id); err != nil && !errors.Is(err, queue.ErrNotFound) {
				return err
			}
			return g.spool.KVDelete(ctx, uncopiedPrefix+id)
		})
	}
	if err := copies.Wait(); err != nil {
		return err
	}
	g.log.Warn("cluster: copied to the stream the queued messages that had no copy (queued before the cluster block)",
		"count", len(ids))
	return nil
}

// uncopiedPrefix begins the spool's key-value entries, one a message,
// that mark the messages copyMissing is copying. Such a message has
// no copy because none was made yet, not because a node took it over, so
// dropTaken keeps it: a start that stopped part-way through the copies,
// then a takeover done before the next start, would otherwise delete
// messages nobody took. No hook's key begins with "/" (hostsvc's scopes
// are "<name>/" and "plugin.<name>/").
const uncopiedPrefix = "/gateway/uncopied/"

// markUncopied marks ids uncopied, every one before any copy starts, and
// unmarks the others marked (by an earlier start whose copies were made
// but not unmarked, or messages gone since).
func (g *Gateway) markUncopied(ctx context.Context, ids []string) error {
	marked, err := g.spool.KVKeys(uncopiedPrefix, time.Now())
	if err != nil {
		return err
	}
	todo := make(map[string]bool, len(ids))
	for _, id := range ids {
		todo[uncopiedPrefix+id] = true
	}
	var writes errgroup.Group
	writes.SetLimit(importers) // writes at once share the spool's fsyncs
	for _, key := range marked {
		if todo[key] {
			delete(todo, key) // marked already
			continue
		}
		writes.Go(func() error { return g.spool.KVDelete(ctx, key) })
	}
	for key := range todo {
		writes.Go(func() error { return g.spool.KVSet(ctx, key, "", 0) })
	}
	return writes.Wait()
}

// markUnclaimed marks uncopied every message without a copy, and returns
// them, when no claim on this node is there (unclaimed): nothing was
// taken from it then, so a message without a copy was never copied.
// reconcileOnce calls it before its heartbeat, since a node's first start
// with a cluster block has written none, and a node cannot be claimed
// before its first: a first start that stops after its heartbeat has its
// marks already. A dropTaken keeps marked messages.
func (g *Gateway) markUnclaimed(ctx context.Context) (missing []string, unclaimed bool, err error) {
	me := g.cfg.Cluster.Node
	if _, claimed, err := g.nodes.ClaimOn(ctx, me); err != nil || claimed {
		return nil, false, err
	}
	if missing, err = g.takenFrom(ctx, me); err != nil {
		return nil, false, err
	}
	return missing, true, g.markUncopied(ctx, missing)
}
