package cluster

// The nodes' heartbeats: one JetStream key-value bucket, NodesBucket, in
// which each node keeps one key (its name, base64url) whose value is its
// NodeStatus as JSON, written every few seconds (Heartbeats). `gateway
// cluster status` lists them; the takeover of a silent node's queue (a
// later step) will read them too.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NodesBucket is the bucket of the nodes' heartbeats.
const NodesBucket = "gateway_nodes"

// NodeStatus is what a node says of itself in its heartbeat.
type NodeStatus struct {
	Node      string    `json:"node"`
	Version   string    `json:"version,omitempty"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"` // on the node's clock
	Queued    int       `json:"queued"`    // messages in its spool
}

// Nodes is the bucket of heartbeats. It does not own the Conn.
type Nodes struct {
	c  *Conn
	kv jetstream.KeyValue
}

// OpenNodes opens the heartbeats' bucket, or creates it, with replicas
// copies.
func (c *Conn) OpenNodes(ctx context.Context, replicas int) (*Nodes, error) {
	cfg := jetstream.KeyValueConfig{
		Bucket:      NodesBucket,
		Description: "gateway: the nodes' heartbeats",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
	kv, err := c.openKV(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &Nodes{c: c, kv: kv}, nil
}

// Beat writes st as its node's heartbeat.
func (n *Nodes) Beat(ctx context.Context, st NodeStatus) error {
	if err := n.c.ready(); err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", err)
	}
	octx, cancel := n.c.opContext(ctx)
	defer cancel()
	_, err = n.kv.Put(octx, base64.RawURLEncoding.EncodeToString([]byte(st.Node)), b)
	n.c.noteWrite(ctx, err)
	if err != nil {
		return fmt.Errorf("cluster: heartbeat: %w", explain(err))
	}
	return nil
}

// List returns every node's last heartbeat, by node name.
func (n *Nodes) List(ctx context.Context) ([]NodeStatus, error) {
	ctx, cancel := n.c.opContext(ctx)
	defer cancel()
	lister, err := n.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: list the nodes: %w", explain(err))
	}
	var out []NodeStatus
	for key := range lister.Keys() {
		if strings.HasPrefix(key, "claim.") {
			continue
		}
		e, err := n.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("cluster: list the nodes: %w", explain(err))
		}
		var st NodeStatus
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			n.c.log.Warn("cluster: unreadable heartbeat", "key", key, "err", err)
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.Node, b.Node) })
	return out, nil
}

// HeartbeatEvery is how often a node whose silence is noticed after
// takeoverAfter writes its heartbeat: six times in that time, at least
// every 10 s and at most every second.
func HeartbeatEvery(takeoverAfter time.Duration) time.Duration {
	return min(max(takeoverAfter/6, time.Second), 10*time.Second)
}

// Heartbeats writes a heartbeat every HeartbeatEvery(takeoverAfter), the
// first at once, with status's answer, until ctx ends. A heartbeat that
// fails is logged, and the next is tried on time. Each heartbeat that
// succeeds calls after (nil: nothing): another node may have taken this
// one's queue over, while it was cut off or paused.
func (n *Nodes) Heartbeats(ctx context.Context, takeoverAfter time.Duration, status func() NodeStatus, after func(context.Context)) {
	t := time.NewTicker(HeartbeatEvery(takeoverAfter))
	defer t.Stop()
	failing := false
	for {
		err := n.Beat(ctx, status())
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			n.c.log.Warn("cluster: heartbeat failed", "err", err)
			failing = true
		case err == nil && failing:
			n.c.log.Info("cluster: heartbeat written again")
			failing = false
		}
		if err == nil && after != nil {
			after(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Claim is a surviving node's claim on a silent node's queue: the key
// claim.<node> of the heartbeats' bucket, created once (Create fails when
// it is there), so exactly one node takes a queue over.
type Claim struct {
	Node    string    `json:"node"`    // whose queue
	By      string    `json:"by"`      // the node that took it
	At      time.Time `json:"at"`      // on the taker's clock
	Silence time.Time `json:"silence"` // the silent node's last heartbeat
	Done    bool      `json:"done"`    // every copy imported
	// Rev is the claim key's revision when it was read or written: what
	// ClaimDone and Reclaim change only if it is still the key's.
	Rev uint64 `json:"-"`
}

func claimKey(node string) string {
	return "claim." + base64.RawURLEncoding.EncodeToString([]byte(node))
}

// TryClaim claims node's queue for c.By and reports whether it got it:
// false when another claim is there (another node's, or one the node has
// not yet cleared after coming back). The claim it got has its Rev.
func (n *Nodes) TryClaim(ctx context.Context, c *Claim) (bool, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	ctx, cancel := n.c.opContext(ctx)
	defer cancel()
	rev, err := n.kv.Create(ctx, claimKey(c.Node), b)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("cluster: claim the queue of %s: %w", c.Node, explain(err))
	}
	c.Rev = rev
	return true, nil
}

// Reclaim replaces old, a claim that is not done (its taker stopped half
// way), with c, and reports whether it did: false when the claim changed
// since old was read (another node reclaimed it, its node cleared it).
func (n *Nodes) Reclaim(ctx context.Context, old Claim, c *Claim) (bool, error) {
	return n.update(ctx, "reclaim the queue of "+c.Node, old.Rev, c)
}

// ClaimDone records that the claim c has imported every copy, unless the
// claim changed since (its node came back and cleared it): then it
// writes nothing and returns ErrClaimChanged.
func (n *Nodes) ClaimDone(ctx context.Context, c Claim) error {
	c.Done = true
	ok, err := n.update(ctx, "claim of "+c.Node+" done", c.Rev, &c)
	if err == nil && !ok {
		err = fmt.Errorf("cluster: claim of %s done: %w", c.Node, ErrClaimChanged)
	}
	return err
}

// ErrClaimChanged: a claim was changed (or cleared) by another node since
// it was read.
var ErrClaimChanged = errors.New("the claim changed since it was read")

// update writes c as node's claim if the key's revision is still rev,
// and reports whether it did; c gets the new revision.
func (n *Nodes) update(ctx context.Context, what string, rev uint64, c *Claim) (bool, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return false, err
	}
	ctx, cancel := n.c.opContext(ctx)
	defer cancel()
	newRev, err := n.kv.Update(ctx, claimKey(c.Node), b, rev)
	switch {
	case conflict(err), errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("cluster: %s: %w", what, explain(err))
	}
	c.Rev = newRev
	return true, nil
}

// ClaimOn returns the claim on node's queue, if there is one.
func (n *Nodes) ClaimOn(ctx context.Context, node string) (Claim, bool, error) {
	ctx, cancel := n.c.opContext(ctx)
	defer cancel()
	e, err := n.kv.Get(ctx, claimKey(node))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return Claim{}, false, nil
	case err != nil:
		return Claim{}, false, fmt.Errorf("cluster: read the claim on %s: %w", node, explain(err))
	}
	var c Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Claim{}, false, fmt.Errorf("cluster: read the claim on %s: %w", node, err)
	}
	c.Rev = e.Revision()
	return c, true, nil
}

// ClearClaim removes the claim on node's queue: the node is back and has
// set its spool right.
func (n *Nodes) ClearClaim(ctx context.Context, node string) error {
	ctx, cancel := n.c.opContext(ctx)
	defer cancel()
	if err := n.kv.Delete(ctx, claimKey(node)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("cluster: clear the claim on %s: %w", node, explain(err))
	}
	return nil
}
