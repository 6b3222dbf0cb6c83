package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mailgate/gateway/core/queue"
)

// kvSweepInterval is how often Run removes expired entries of the hooks'
// key-value store.
const kvSweepInterval = time.Hour

// Run serves until ctx is done or a listener fails, then stops in the
// order that loses nothing: the pickup stops taking files, the SMTP
// listeners and the inject endpoint close and their sessions get cfg.ShutdownTimeout to finish, then the
// delivery engine lets its attempts in flight end, then the admin API and
// the key-value sweep stop, the hook handlers are released (plugins stop),
// and the spool is closed last. Every goroutine Run starts has ended when
// it returns. Run may be called once, and not after Close.
func (g *Gateway) Run(ctx context.Context) (err error) {
	ran := false
	g.runOnce.Do(func() { ran = true })
	if !ran {
		return errRunTwice
	}
	defer func() {
		if cerr := g.release(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// A part that fails stops the whole gateway: a gateway without its
	// engine or its admin API must not go on as if it had them.
	failed := make(chan error, len(g.listeners)+8) // room for every part
	// The background parts stop only after the servers: they get a
	// context of their own.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var background sync.WaitGroup
	g.goPart(&background, failed, "delivery engine", func() error { return g.engine.Run(bg) })
	if g.adminLn != nil {
		g.goPart(&background, failed, "admin", func() error { return g.admin.Serve(bg, g.adminLn) })
	}
	g.goPart(&background, failed, "kv sweep", func() error { return sweepKV(bg, g.spool, kvSweepInterval, g.log) })
	if g.nodes != nil {
		g.goPart(&background, failed, "cluster heartbeats", func() error { g.heartbeats(bg); return nil })
		g.goPart(&background, failed, "cluster takeovers", func() error { g.takeovers(bg); return nil })
	}
	if g.tlsReports != nil {
		g.goPart(&background, failed, "tls reports", func() error { g.tlsReports.Run(bg); return nil })
	}

	var serving sync.WaitGroup
	for _, l := range g.listeners {
		g.goPart(&serving, failed, "listener "+l.name, func() error {
			if err := l.srv.Serve(l.ln); !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
	}
	if g.inject != nil {
		g.goPart(&serving, failed, "inject", g.inject.serve)
	}
	pickupCtx, stopPickup := context.WithCancel(ctx)
	defer stopPickup()
	g.goPart(&serving, failed, "pickup", func() error { return g.pickup.run(pickupCtx) })
	select {
	case <-ctx.Done():
		g.log.Info("stopping", "grace", g.cfg.ShutdownTimeout.String())
	case err = <-failed:
		g.log.Error("a part failed; stopping", "err", err)
	}
	stopPickup()
	g.shutdownServers(ctx)
	serving.Wait()
	stopBackground()
	background.Wait()
	st := g.spool.Stats()
	g.log.Info("stopped", "queued", g.spool.Len(), "commits", st.Commits, "fsyncs", st.Batches)
	return err
}

// shutdownServers stops every SMTP server and the inject endpoint at once,
// each letting its sessions finish within cfg.ShutdownTimeout.
func (g *Gateway) shutdownServers(ctx context.Context) {
	// The caller's ctx is done: the grace period needs a context of its own.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range g.listeners {
		wg.Go(func() {
			if err := l.srv.Shutdown(stopCtx); err != nil {
				g.log.Warn("shutdown", "listener", l.name, "err", err)
			}
		})
	}
	if g.inject != nil {
		wg.Go(func() { g.inject.shutdown(stopCtx) })
	}
	wg.Go(func() {
		if err := g.pickup.srv.Shutdown(stopCtx); err != nil {
			g.log.Warn("shutdown", "part", "pickup", "err", err)
		}
	})
	wg.Wait()
}

// goPart runs the part fn in a goroutine that wg tracks. An error it
// returns (other than a cancellation) or a panic goes to failed, which
// stops the gateway; failed has room for every part.
func (g *Gateway) goPart(wg *sync.WaitGroup, failed chan<- error, part string, fn func() error) {
	wg.Go(func() {
		defer func() {
			if p := recover(); p != nil {
				failed <- fmt.Errorf("%s panicked: %v", part, p)
			}
		}()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			failed <- fmt.Errorf("%s: %w", part, err)
		}
	})
}

// sweepKV calls spool.KVSweep at start (a gateway restarted more often
// than interval must still sweep) and then every interval until ctx is
// done.
func sweepKV(ctx context.Context, spool *queue.Spool, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for now := time.Now(); ; {
		n, err := spool.KVSweep(ctx, now)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("kv sweep", "err", err)
		case n > 0:
			log.Debug("kv sweep", "removed", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case now = <-t.C:
		}
	}
}
