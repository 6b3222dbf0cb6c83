package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/gateway"
)

const defaultConfig = "gateway.hcl"

// serveGCPercent is the garbage collector's target for `gateway serve`
// unless GOGC is set: the gateway's live heap is small (sessions stream
// bodies to the spool, the spool is mapped, not on the heap), so Go's
// default of 100 collects every few megabytes, which cost about a quarter
// of the CPU per accepted message under smtp-source load. 400 lets the
// heap grow to five times what is live between collections.
const serveGCPercent = 400

// serveMemoryLimit is the soft limit on the Go runtime's memory for
// `gateway serve` unless GOMEMLIMIT is set: when a thousand sessions carry
// large messages at once, the collector works harder instead of letting
// serveGCPercent grow the heap five-fold (the bound is 256 MB of
// RSS for 1,000 sessions of 20 MB messages).
const serveMemoryLimit = 160 << 20

// runServe runs the gateway of the configuration file until SIGINT or
// SIGTERM (ctx), and reloads its hook pipeline on every SIGHUP. The
// assembly, the order of start and stop, and reload itself are
// core/gateway's.
func runServe(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "serve", "[-config gateway.hcl] [-accept-empty-spool]")
	path := fs.String("config", defaultConfig, "configuration file")
	acceptEmpty := fs.Bool("accept-empty-spool", false,
		"start even though spool.db is new or empty beside message bodies (they are moved to queue/orphans/)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until the gateway stops")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serveGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log, err := newLogger(c.Stderr, cfg.Log)
	if err != nil {
		return err
	}
	g, err := gateway.New(ctx, cfg, gateway.Options{Log: log, Version: version, AcceptEmptySpool: *acceptEmpty})
	if err != nil {
		return spoolAdvice(err, *path)
	}
	hupCtx, stopHUP := context.WithCancel(ctx)
	hupDone := reloadOnSIGHUP(hupCtx, g, log.With("part", "reload"))
	err = g.Run(ctx)
	stopHUP()
	<-hupDone
	return err
}

// reloadOnSIGHUP reloads g's hook pipeline on every SIGHUP until ctx is
// done; the returned channel is closed when it has stopped listening.
func reloadOnSIGHUP(ctx context.Context, g *gateway.Gateway, log *slog.Logger) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the hook pipeline")
				g.Reload(ctx) // logs its own outcome
			}
		}
	}()
	return done
}

func newLogger(w io.Writer, l config.Log) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil && l.Level != "" {
		return nil, fmt.Errorf("log level %q: %w", l.Level, err)
	}
	opt := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.Format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opt)), nil
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opt)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", l.Format)
}
