// Package admin owns the gateway's admin HTTP API: the queue as JSON and its
// operations (retry, hold, release, bounce, remove), Prometheus metrics,
// a health check and a configuration reload.
//
// The API has no authentication, so it is served on loopback only: Serve
// refuses any other listener. It also refuses requests whose Host is not a
// loopback name (DNS rebinding) and cross-origin browser requests that
// change state (CSRF), so a web page open on the same machine cannot use it.
//
// Routes (JSON in and out; an error is {"error": "..."} with the status):
//
//	GET    /healthz                      {"status":"ok"}; 503 {"status":"unavailable","reason":...} while a cluster node is cut off from NATS
//	GET    /v1/cluster                   ClusterStats and the nodes' heartbeats (404 without a cluster block)
//	GET    /v1/queue[?limit=N&domain=D]  [Message, ...] in arrival order; limit defaults to 1000
//	GET    /v1/queue?cluster=1[&…]       every cluster node's copies on the queue's stream, with their node
//	GET    /v1/queue/{id}                Message with its envelope details
//	DELETE /v1/queue/{id}                remove without a DSN          → Result
//	POST   /v1/queue/{id}/retry          make it due now               → Result
//	POST   /v1/queue/{id}/hold           stop its deliveries           → Result
//	POST   /v1/queue/{id}/release        undo hold                     → Result
//	POST   /v1/queue/{id}/bounce         fail it now, with DSNs        → Result
//	POST   /v1/queue/retry?domain=D      make D's messages due now     → Count
//	POST   /v1/queue/retry?all=1         make every message due now    → Count
//	GET    /v1/domains                   [DomainHold, ...] the held domains, sorted
//	POST   /v1/domains/{domain}/hold     hold D's mail in the queue    → DomainResult
//	POST   /v1/domains/{domain}/release  undo hold; D's mail due now   → DomainResult with count
//	POST   /v1/reload                    reload the configuration      {"status":"reloaded"}
//	GET    /metrics                      Prometheus text format
//
// A held domain (delivery { hold_domains }, or held here) is a name or
// "*.name" for its subdomains; its mail stays queued without an attempt
// until released, flushed once by ETRN or retry?domain=D (which also
// lifts a hold of exactly D), or expired. A queued recipient whose domain
// is held shows the hold in its "held" field. Holds made here are kept
// in the spool and survive a restart; a release of a domain that only
// hold_domains holds is a 404 that says so.
//
// Status codes: 400 bad input, 404 unknown path, queue ID or held domain,
// 405 wrong method, 409 the message is being delivered (retry when it is
// done), 501 no reload function, 503 no delivery engine.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailgate/gateway/core/delivery"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/smtp"
)

// Queue is what the API reads from the spool (*queue.Spool implements it).
type Queue interface {
	Get(id string) (*queue.Message, error)
	List(fn func(*queue.Message) bool) error
	Len() int
	Stats() queue.Stats
}

// Engine is what the API asks of the delivery engine (*delivery.Engine
// implements it). Errors wrapping delivery.ErrNotFound or
// delivery.ErrNotHeld become 404, delivery.ErrBadDomain 400 and
// delivery.ErrBusy 409.
type Engine interface {
	Retry(ctx context.Context, id string) error
	RetryDomain(ctx context.Context, domain string) (int, error)
	RetryAll(ctx context.Context) (int, error)
	Hold(ctx context.Context, id string) error
	Release(ctx context.Context, id string) error
	Bounce(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	HoldDomain(ctx context.Context, domain string) error
	ReleaseDomain(ctx context.Context, domain string) (int, error)
	HeldDomains() []delivery.DomainHold
	HoldOf(domain string) (delivery.DomainHold, bool)
	Stats() delivery.Stats
}

// ServerStats is an SMTP server whose counters the metrics report
// (*smtp.Server implements it).
type ServerStats interface {
	Stats() smtp.ServerStats
}

// OutboundTLS counts the TLS handshakes of outbound connections
// (*delivery.SMTP implements it).
type OutboundTLS interface {
	TLSHandshakes() map[smtp.TLSHandshake]int64
}

// ServerStatsFunc adapts a function to ServerStats.
type ServerStatsFunc func() smtp.ServerStats

// Stats calls f.
func (f ServerStatsFunc) Stats() smtp.ServerStats { return f() }

// Options configure an Admin.
type Options struct {
	Queue   Queue                           // required
	Engine  Engine                          // nil: queue operations answer 503, no delivery metrics
	Servers []ServerStats                   // SMTP servers, summed in the metrics
	Out     OutboundTLS                     // nil: no outbound handshake metrics
	Cluster Cluster                         // nil: no cluster block (GET /v1/cluster answers 404)
	Reload  func(ctx context.Context) error // nil: POST /v1/reload answers 501
	Log     *slog.Logger                    // nil = discard
	Version string                          // reported by gateway_build_info
	Now     func() time.Time                // nil = time.Now (tests)
}

// Admin serves the admin API. Create it with New.
type Admin struct {
	opt      Options
	log      *slog.Logger
	now      func() time.Time
	registry *prometheus.Registry
	observer *observer
	handler  http.Handler
}

// ErrNotLoopback is returned by Serve for a listener that is not on a
// loopback address.
var ErrNotLoopback = errors.New("admin: refusing a listener that is not on loopback: the admin API has no authentication")

// Timeouts of the HTTP server.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 60 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// New returns an Admin for opt. It panics if opt.Queue is nil.
func New(opt Options) *Admin {
	if opt.Queue == nil {
		panic("admin: New needs a queue")
	}
	a := &Admin{opt: opt, log: opt.Log, now: opt.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.registry, a.observer = newRegistry(a)
	a.handler = a.routes()
	return a
}

// Handler returns the API's HTTP handler.
func (a *Admin) Handler() http.Handler { return a.handler }

// Observer returns the delivery.Observer that feeds the delivery metrics;
// pass it in delivery.Options.
func (a *Admin) Observer() delivery.Observer { return a.observer }

// Serve serves the API on ln until ctx is done, then shuts down, giving
// requests in flight a few seconds to finish, and returns nil. A listener
// that is not on a loopback address is refused with ErrNotLoopback. Serve
// closes ln in every case.
func (a *Admin) Serve(ctx context.Context, ln net.Listener) error {
	if !isLoopback(ln.Addr()) {
		ln.Close()
		return fmt.Errorf("%w: %s", ErrNotLoopback, ln.Addr())
	}
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		// Requests see the caller's values but end by Shutdown, not by
		// ctx: the grace period lets them finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer func() {
			if p := recover(); p != nil {
				a.log.Error("admin: panic in shutdown", "panic", p)
			}
		}()
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			a.log.Warn("admin: shutdown", "err", err)
			srv.Close()
		}
	}()
	err := srv.Serve(ln)
	close(done)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin: serve: %w", err)
}

// isLoopback reports whether addr is a TCP address on a loopback IP.
func isLoopback(addr net.Addr) bool {
	a, ok := addr.(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

var (
	_ Queue       = (*queue.Spool)(nil)
	_ Engine      = (*delivery.Engine)(nil)
	_ ServerStats = (*smtp.Server)(nil)
	_ ServerStats = ServerStatsFunc(nil)
	_ OutboundTLS = (*delivery.SMTP)(nil)
)
