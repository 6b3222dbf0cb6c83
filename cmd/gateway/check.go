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
	// Compile every script of the pipeline, as serve would. There is no
	// spool here (serve may hold it), so gw.kv at a script's top level
	// fails; the scripts' hook functions are not run.
	dns, err := resolver.New(resolver.Options{Servers: cfg.Delivery.Resolver})
	if err != nil {
		return err
	}
	chain, closers, err := buildChain(ctx, cfg, hookDeps{Resolver: dns})
	if err != nil {
		return err
	}
	closeAll(closers)
	hooks := ""
	if n := chain.Len(); n > 0 {
		hooks = fmt.Sprintf(", %d hooks", n)
	}
	fmt.Fprintf(c.Stdout, "%s: ok (%d listeners, %d local domains%s, data in %s)\n",
		*path, len(cfg.Listeners), len(cfg.Domains), hooks, cfg.DataDir)
	return nil
}
