package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/config"
)

const clusterSynopsis = "status [-config gateway.hcl]"

// runCluster is `gateway cluster`: the cluster as the NATS servers of the
// configuration's cluster block see it.
func runCluster(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "cluster", clusterSynopsis)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch sub := fs.Arg(0); sub {
	case "status":
		return runClusterStatus(ctx, c, fs.Args()[1:])
	case "":
	default:
		fmt.Fprintf(c.Stderr, "gateway cluster: unknown command %q\n", sub)
	}
	fs.Usage()
	return errUsage
}

// runClusterStatus prints every node's last heartbeat: how long ago
// (silent past takeover_after), its queue's size, version and start.
func runClusterStatus(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "cluster status", "[-config gateway.hcl]")
	path := fs.String("config", defaultConfig, "configuration file (its cluster block names the NATS servers)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.Cluster == nil {
		return errors.New(*path + " has no cluster block")
	}
	conn, err := cluster.Connect(ctx, cluster.Options{Config: *cfg.Cluster})
	if err != nil {
		return err
	}
	defer conn.Close()
	nodes, err := conn.OpenNodes(ctx, cfg.Cluster.Replicas)
	if err != nil {
		return err
	}
	list, err := nodes.List(ctx)
	if err != nil {
		return err
	}
	printNodes(c, list, cfg.Cluster.TakeoverAfter, time.Now())
	return nil
}

// printNodes writes the table of runClusterStatus.
func printNodes(c *cli, list []cluster.NodeStatus, takeoverAfter time.Duration, now time.Time) {
	w := tabwriter.NewWriter(c.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "NODE\tSTATE\tHEARTBEAT\tQUEUED\tVERSION\tSTARTED")
	for _, n := range list {
		age := now.Sub(n.Heartbeat).Round(time.Second)
		state := "alive"
		if age > takeoverAfter {
			state = "silent"
		}
		fmt.Fprintf(w, "%s\t%s\t%s ago\t%d\t%s\t%s\n", n.Node, state, age, n.Queued, n.Version,
			n.Started.UTC().Format(time.RFC3339))
	}
	w.Flush()
	if len(list) == 0 {
		fmt.Fprintln(c.Stdout, "no node has written a heartbeat")
	}
}
