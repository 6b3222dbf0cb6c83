package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mailgate/gateway/core/cluster"
	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/core/resolver"
	"github.com/mailgate/gateway/sdk"
)

// Report is what Check found in a configuration that passed.
type Report struct {
	Hooks   int          // handlers in the pipeline
	Plugins []PluginInfo // the pipeline's plugins, in order
	// NATS is the NATS server a cluster block reached, with JetStream
	// answering ("" without a block).
	NATS string
}

// PluginInfo is one plugin's answer to the handshake.
type PluginInfo struct {
	Name string // the block's label
	Info sdk.Info
}

// loadableHooks returns cfg with only the pipeline entries that have a
// block whose script or executable exists, and whether it left any out. A
// configuration that loaded has no others; one from config.LoadPartial
// may, and the config's own diagnostics already name them. (A route to
// the transport of a plugin left out would fail for that reason only, so
// routes are not checked then.)
func loadableHooks(cfg *config.Config) (*config.Config, bool) {
	paths := map[string]string{}
	for _, h := range cfg.Lua {
		paths[h.PipelineName()] = h.Path
	}
	for _, h := range cfg.Plugins {
		paths[h.PipelineName()] = h.Path
	}
	c := *cfg
	c.Pipeline = nil
	for _, name := range cfg.Pipeline {
		if p, ok := paths[name]; ok && p != "" && fileExists(p) {
			c.Pipeline = append(c.Pipeline, name)
		}
	}
	return &c, len(c.Pipeline) < len(cfg.Pipeline)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Check does what New would do with cfg short of opening the spool and
// binding sockets, and reports every problem it finds, all joined (the
// listeners' certificates config.Load has read already, to report a bad
// pair at its line): every script of the pipeline compiled
// and every plugin started, handshaken, checked against its schema and
// stopped again, every route's transport looked up, and a cluster block's
// NATS servers connected to (JetStream must answer). No hook is called;
// the hooks' key-value store is not the spool (a running gateway may hold
// it), so a script's or plugin's key-value calls while loading fail.
func Check(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Report, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	dns, err := resolver.New(resolver.Options{Servers: cfg.Delivery.Resolver})
	if err != nil {
		errs = append(errs, fmt.Errorf("%s: delivery: resolver: %w", cfg.File, err))
		dns = nil // the hooks are checked without DNS
	}
	loadable, skipped := loadableHooks(cfg)
	set, err := buildHooks(ctx, loadable, hookDeps{Services: hostsvc.New(hostsvc.Options{Resolver: dns, Log: log}), Log: log})
	if err != nil {
		errs = append(errs, err)
	}
	defer set.close()
	if !skipped && !set.pluginFailed {
		if err := checkRoutes(cfg.Delivery.Routes, set.transports); err != nil {
			errs = append(errs, err)
		}
	}
	nats, err := checkCluster(ctx, cfg)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r := &Report{Hooks: set.chain.Len(), NATS: nats}
	for _, p := range set.plugins {
		r.Plugins = append(r.Plugins, PluginInfo{Name: p.Name(), Info: p.Info()})
	}
	return r, nil
}

// checkCluster connects to the NATS servers of cfg's cluster block, as
// serve would, and returns the server that answered; "" without a block.
func checkCluster(ctx context.Context, cfg *config.Config) (string, error) {
	if cfg.Cluster == nil {
		return "", nil
	}
	c, err := cluster.Connect(ctx, cluster.Options{Config: *cfg.Cluster, FormTimeout: checkFormTimeout})
	if err != nil {
		return "", fmt.Errorf("%s: %w", cfg.File, err) // err says "cluster: "
	}
	defer c.Close()
	return c.ServerURL(), nil
}

// checkFormTimeout is how long check waits for JetStream to answer.
const checkFormTimeout = 5 * time.Second
