package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

const defaultConfig = "gateway.hcl"

func runServe(ctx context.Context, c *cli, args []string) error {
	fs := newFlags(c, "serve", "[-config gateway.hcl]")
	path := fs.String("config", defaultConfig, "configuration file")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until the gateway stops")
	if err := parseFlags(fs, args); err != nil {
		return err
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
	return serve(ctx, cfg, log)
}

// serve runs the gateway described by cfg until ctx is done, then stops
// gracefully: listeners close, sessions get cfg.ShutdownTimeout to finish,
// and the spool is closed last so every accepted message is on disk.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) (err error) {
	spool, err := queue.Open(filepath.Join(cfg.DataDir, "queue"), queue.Options{Log: log.With("part", "queue")})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := spool.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	var auth smtp.Authenticator
	if len(cfg.Auth.Users) > 0 {
		auth = smtp.NewPasswordTable(cfg.Auth.Users)
	}
	hooks := hook.NewChain(log.With("part", "hook")) // the pipeline: empty until hooks are configured

	type running struct {
		srv *smtp.Server
		ln  net.Listener
	}
	var servers []running
	defer func() {
		for _, r := range servers {
			r.ln.Close()
		}
	}()
	for _, l := range cfg.Listeners {
		tlsConfig, err := loadTLS(l.TLS)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		srv, err := smtp.NewServer(smtp.Options{
			Hostname:           cfg.Hostname,
			Listener:           l,
			LocalDomains:       cfg.Domains,
			RelayNetworks:      cfg.Relay.Networks,
			RelayAuthenticated: cfg.Relay.Authenticated,
			TLS:                tlsConfig,
			Auth:               auth,
			Hooks:              hooks,
			Spool:              spoolAdapter{spool},
			Log:                log.With("listener", l.Name),
		})
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			return fmt.Errorf("listener %q: %w", l.Name, err)
		}
		servers = append(servers, running{srv, ln})
		log.Info("listening", "listener", l.Name, "address", ln.Addr().String(), "tls", tlsConfig != nil)
	}

	var wg sync.WaitGroup
	serveErr := make(chan error, len(servers))
	for _, r := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.srv.Serve(r.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				serveErr <- err
			}
		}()
	}

	select {
	case <-ctx.Done():
		log.Info("stopping", "grace", cfg.ShutdownTimeout.String())
	case err = <-serveErr:
		log.Error("listener failed; stopping", "err", err)
	}
	// The caller's ctx is done: the grace period needs a context of its own.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var sw sync.WaitGroup
	for _, r := range servers {
		sw.Add(1)
		go func() {
			defer sw.Done()
			if err := r.srv.Shutdown(stopCtx); err != nil {
				log.Warn("shutdown", "err", err)
			}
		}()
	}
	sw.Wait()
	wg.Wait()
	log.Info("stopped")
	return err
}

// spoolAdapter lets the server use the spool through its own Spool interface.
type spoolAdapter struct{ s *queue.Spool }

func (a spoolAdapter) Create(ctx context.Context) (smtp.Draft, error) {
	d, err := a.s.Create(ctx)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func loadTLS(t *config.TLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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
