package main

import (
	"context"
	"fmt"

	"github.com/mailgate/gateway/core/config"
)

// runCheck validates the configuration and prints what it found; on error
// it prints every diagnostic as file:line:column and exits 1.
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
	fmt.Fprintf(c.Stdout, "%s: ok (%d listeners, %d local domains, data in %s)\n",
		*path, len(cfg.Listeners), len(cfg.Domains), cfg.DataDir)
	return nil
}
