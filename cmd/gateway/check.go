package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway"
)

// runCheck validates the configuration, compiles the hook scripts, starts
// and stops the plugins, and prints what it found; on error it prints
// every problem it found in one run, each as file:line:column (a script's
// as file:line), and exits 1: a wrong value in the file does not stop the
// scripts and plugins from being checked.
func runCheck(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "check", "[-config gateway.hcl]")
	path := fs.String("config", defaultConfig, "configuration file")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, cfgErr := config.LoadPartial(*path)
	if cfg == nil {
		return cfgErr
	}
	if _, err := newLogger(c.Stderr, cfg.Log); err != nil && cfgErr == nil {
		return err
	}
	r, err := gateway.Check(ctx, cfg, nil) // each problem names its file:line
	if err := errors.Join(cfgErr, err); err != nil {
		return err
	}
	hooks := ""
	if r.Hooks > 0 {
		hooks = fmt.Sprintf(", %d hooks", r.Hooks)
	}
	fmt.Fprintf(c.Stdout, "%s: ok (%d listeners, %d local domains%s, data in %s)\n",
		*path, len(cfg.Listeners), len(cfg.Domains), hooks, cfg.DataDir)
	for _, p := range r.Plugins {
		fmt.Fprintf(c.Stdout, "  %s\n", pluginSummary(p.Name, p.Info))
	}
	if r.NATS != "" {
		fmt.Fprintf(c.Stdout, "  cluster: node %s, JetStream answers at %s\n", cfg.Cluster.Node, r.NATS)
	}
	return nil
}
