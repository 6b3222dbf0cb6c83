package main

import (
	"context"
	"fmt"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway"
)

// runCheck validates the configuration, compiles the hook scripts, starts
// and stops the plugins, and prints what it found; on error it prints
// every diagnostic as file:line:column (a script's as file:line) and exits 1.
func runCheck(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "check", "[-config gateway.hcl]")
	path := fs.String("config", defaultConfig, "configuration file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if _, err := newLogger(c.Stderr, cfg.Log); err != nil {
		return err
	}
	r, err := gateway.Check(ctx, cfg, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", *path, err)
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
	return nil
}
