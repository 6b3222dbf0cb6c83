package gateway

import (
	"context"
	"time"

	"github.com/mailgate/gateway/core/admin"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/queue"
)

// joinCluster connects to the NATS servers of the cluster block, if there
// is one, and opens the copy of this node's queue on them (the spool's
// Replica: no 250 before a message is on the stream too); nil without a
// block. The connection is the gateway's (release closes it, after the
// spool). A NATS that cannot be reached, or has no JetStream, fails the
// start: a node would accept mail the operator believes replicated.
func (g *Gateway) joinCluster(ctx context.Context) (queue.Replica, error) {
	cfg := g.cfg.Cluster
	if cfg == nil {
		return nil, nil
	}
	var err error
	g.cluster, err = cluster.Connect(ctx, cluster.Options{Config: *cfg, Log: g.log.With("part", "cluster")})
	if err != nil {
		return nil, err
	}
	if g.replica, err = g.cluster.OpenReplica(ctx, cfg.Node, cfg.Replicas); err != nil {
		return nil, err
	}
	if g.nodes, err = g.cluster.OpenNodes(ctx, cfg.Replicas); err != nil {
		return nil, err
	}
	g.log.Info("queue replicated on NATS JetStream", "node", cfg.Node, "replicas", cfg.Replicas, "stream", cluster.QueueStream)
	return g.replica, nil
}

// stores are the stores behind the hooks' two key-value kinds.
type stores struct{ durable, ephemeral hostsvc.Store }

// kvStores are the stores behind the hooks' key-value kinds (gw.durable
// and gw.kv, gw.ephemeral, a plugin's Host.Durable and Host.Ephemeral):
// the spool's and the gateway's memory, or with a cluster block two
// JetStream buckets every node shares, one on the servers' disks and one
// in their memory, over a connection the gateway owns (release closes
// it). Both kinds are shared so that a script's limits (relay.lua's rate
// counter is ephemeral) hold across the nodes with no change. A NATS that
// cannot be reached, or has no JetStream, fails the start: a node that
// went on with stores of its own would let a sender rotate nodes past
// every limit.
func (g *Gateway) kvStores(ctx context.Context) (stores, error) {
	cfg := g.cfg.Cluster
	if g.cluster == nil {
		return stores{durable: g.spool}, nil // ephemeral: hostsvc's Memory
	}
	var err error
	var st stores
	if st.durable, err = g.cluster.OpenStore(ctx, cluster.StoreOptions{Bucket: cluster.DefaultBucket, Replicas: cfg.Replicas}); err != nil {
		return stores{}, err
	}
	opt := cluster.StoreOptions{Bucket: cluster.EphemeralBucket, Replicas: cfg.Replicas, Memory: true}
	if st.ephemeral, err = g.cluster.OpenStore(ctx, opt); err != nil {
		return stores{}, err
	}
	g.log.Info("hooks' key-value stores on NATS JetStream", "node", cfg.Node, "replicas", cfg.Replicas,
		"durable", cluster.DefaultBucket, "ephemeral", cluster.EphemeralBucket)
	return st, nil
}

// heartbeats writes this node's heartbeat (its name, version, start and
// queue size) until ctx ends; a part of Run with a cluster block. After
// each heartbeat it looks for a claim on this node's queue: one that
// another node made while this one was cut off from NATS, or paused past
// takeover_after (its heartbeat then looked old), and drops what was
// taken once the takeover is done, or after twice takeover_after.
func (g *Gateway) heartbeats(ctx context.Context) {
	var since time.Time // when a claim not done was first seen
	g.nodes.Heartbeats(ctx, g.cfg.Cluster.TakeoverAfter, g.status, func(ctx context.Context) {
		anyway := !since.IsZero() && time.Since(since) > 2*g.cfg.Cluster.TakeoverAfter
		done, err := g.dropTaken(ctx, g.engine.Remove, anyway)
		switch {
		case err != nil:
			g.log.Warn("cluster: cannot check whether this node's queue was taken over; trying at the next heartbeat", "err", err)
		case done:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		}
	})
}

// status is this node's heartbeat now.
func (g *Gateway) status() cluster.NodeStatus {
	return cluster.NodeStatus{Node: g.cfg.Cluster.Node, Version: g.version, Started: g.started,
		Heartbeat: time.Now(), Queued: g.spool.Len()}
}

// clusterView is the admin API's view of this node's cluster.
type clusterView struct{ g *Gateway }

var _ admin.Cluster = clusterView{}

func (v clusterView) ClusterStats() admin.ClusterStats {
	g := v.g
	st := admin.ClusterStats{Node: g.cfg.Cluster.Node, Connected: g.cluster.Connected(), CopiesPending: g.cluster.Pending(),
		Takeovers: g.takeoverCount.Load(), TakenOver: g.takenOver.Load()}
	if err := g.cluster.WriteError(); err != nil {
		st.WriteError = err.Error()
	}
	if r := g.replica; r != nil {
		rs := r.Stats()
		st.Copies, st.CopyFailures = rs.Copies.Load(), rs.Failures.Load()
		st.CopyWaitSeconds = time.Duration(rs.WaitNanos.Load()).Seconds()
		st.StateUpdates = rs.States.Load()
	}
	return st
}

func (v clusterView) ClusterNodes(ctx context.Context) ([]cluster.NodeStatus, error) {
	return v.g.nodes.List(ctx)
}

func (v clusterView) ClusterQueue(ctx context.Context, fn func(node string, m *queue.Message) bool) error {
	nodes, err := v.g.nodes.List(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		more := true
		err := v.g.cluster.Copies(ctx, n.Node, func(cp cluster.Copy) bool {
			m, err := queue.DecodeRecord(cp.Record)
			if err != nil {
				v.g.log.Warn("cluster: unreadable copy", "node", n.Node, "id", cp.ID, "err", err)
				return true
			}
			more = fn(n.Node, m)
			return more
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}
