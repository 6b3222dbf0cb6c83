package delivery

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/queue"
)

// Options configure an Engine.
type Options struct {
	Spool    *queue.Spool
	Hostname string          // Reporting-MTA of DSNs, EHLO name
	Config   config.Delivery // routes, retry schedule, lifetime, limits, postmaster
	// Transports by name: "smtp", "lmtp", "maildir", plugin transports.
	Transports map[string]Transport
	Hooks      hook.Dispatcher // predelivery and the delivered/deferred/bounced notifications; nil = none
	Observer   Observer        // metrics; nil = none
	Log        *slog.Logger
	Now        func() time.Time // nil = time.Now (tests use a fake clock)
}

// Observer receives what metrics need; core/admin implements it.
type Observer interface {
	// Attempted reports one recipient's outcome of one attempt and how long
	// the attempt took.
	Attempted(domain string, class Class, took time.Duration)
	// Bounced reports a DSN queued (action "failed" or "delayed").
	Bounced(action Action)
}

// Stats are the engine's counters since start.
type Stats struct {
	InFlight  int   // messages being delivered now
	Delivered int64 // recipients
	Deferred  int64 // recipient attempts that ended temporary
	Failed    int64 // recipients failed permanently (bounced or expired)
	DSNs      int64 // DSN messages queued
}

// ErrNotFound is returned for an unknown queue ID (wraps queue.ErrNotFound).
var ErrNotFound = queue.ErrNotFound

// ErrBusy is returned when an operation needs a message that is being
// delivered right now.
var ErrBusy = errors.New("delivery: message is being delivered")

// Engine schedules and performs deliveries of the spool's messages.
type Engine struct{ opt Options }

// New checks opt and returns an engine; Run starts it.
func New(opt Options) (*Engine, error) { panic("todo") }

// Run delivers due messages until ctx is done, then waits for attempts in
// flight to finish (they see ctx cancelled) and returns.
func (e *Engine) Run(ctx context.Context) error { panic("todo") }

// Kick tells the engine that new mail may be due now (called after a
// commit); it never blocks.
func (e *Engine) Kick() { panic("todo") }

// Retry makes a message due now. RetryDomain makes every message with an
// undelivered recipient in domain due now (ETRN, `queue retry --domain`);
// RetryAll makes everything due now. They return how many messages changed.
func (e *Engine) Retry(ctx context.Context, id string) error                  { panic("todo") }
func (e *Engine) RetryDomain(ctx context.Context, domain string) (int, error) { panic("todo") }
func (e *Engine) RetryAll(ctx context.Context) (int, error)                   { panic("todo") }

// Hold stops deliveries of a message until Release.
func (e *Engine) Hold(ctx context.Context, id string) error    { panic("todo") }
func (e *Engine) Release(ctx context.Context, id string) error { panic("todo") }

// Bounce fails every undelivered recipient now (5.0.0, "bounced by the
// administrator"), sends the DSN the recipients asked for and removes the
// message.
func (e *Engine) Bounce(ctx context.Context, id string) error { panic("todo") }

// Remove deletes a message without any DSN.
func (e *Engine) Remove(ctx context.Context, id string) error { panic("todo") }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats { panic("todo") }
