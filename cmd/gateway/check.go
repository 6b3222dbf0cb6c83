package main

import (
	"context"
	"fmt"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/resolver"
)

// runCheck validates the configuration, compiles the hook scripts, and
// prints what it found; on error it prints every diagnostic as
// file:line:column (a script's as file:line) and exits 1.
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
	for _, l := range cfg.Listeners {
		if _, err := loadTLS(l.TLS); err != nil {
			return fmt.Errorf("%s: listener %q: %w", *path, l.Name, err)
		}
	}
	// Compile every script of the pipeline and start every plugin, as
	// serve would: a plugin is handshaken, its config block checked
	// against its schema (diagnostics name file:line) and configured, then
	// stopped. There is no spool here (serve may hold it), so gw.kv at a
	// script's top level and a plugin's KV calls in Configure fail; no
	// hook is called.
	dns, err := resolver.New(resolver.Options{Servers: cfg.Delivery.Resolver})
	if err != nil {
		return err
	}
	set, err := buildHooks(ctx, cfg, hookDeps{Resolver: dns})
	if err != nil {
		return err
	}
	defer closeAll(set.closers)
	if err := checkRoutes(cfg.Delivery.Routes, set.transports); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	hooks := ""
	if n := set.chain.Len(); n > 0 {
		hooks = fmt.Sprintf(", %d hooks", n)
	}
	fmt.Fprintf(c.Stdout, "%s: ok (%d listeners, %d local domains%s, data in %s)\n",
		*path, len(cfg.Listeners), len(cfg.Domains), hooks, cfg.DataDir)
	for _, p := range set.plugins {
		fmt.Fprintf(c.Stdout, "  %s\n", pluginSummary(p.Name(), p.Info()))
	}
	return nil
}
