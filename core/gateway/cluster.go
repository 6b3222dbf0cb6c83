package gateway

import (
	"context"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/hostsvc"
)

// durableStore is the store behind the hooks' durable key-value kind
// (gw.durable, gw.kv, a plugin's Host.Durable): the spool's, or with a
// cluster block the JetStream bucket every node shares, over a
// connection the gateway owns (release closes it). A NATS that cannot be
// reached, or has no JetStream, fails the start: a node that went on with
// its own store would let a sender rotate nodes past every limit.
func (g *Gateway) durableStore(ctx context.Context) (hostsvc.Store, error) {
	cfg := g.cfg.Cluster
	if cfg == nil {
		return g.spool, nil
	}
	var err error
	g.cluster, err = cluster.Connect(ctx, cluster.Options{Config: *cfg, Log: g.log.With("part", "cluster")})
	if err != nil {
		return nil, err
	}
	st, err := g.cluster.OpenStore(ctx, cluster.StoreOptions{Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	g.log.Info("shared key-value store on NATS JetStream", "node", cfg.Node, "bucket", cluster.DefaultBucket, "replicas", cfg.Replicas)
	return st, nil
}
