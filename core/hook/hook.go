// Package hook owns the hook engine's contract with the rest of the core:
// the request a stage hands to its handlers, the ordered chain that runs
// them (the configured pipeline), each handler's on_error policy and
// deadline, and the stage defaults that turn a verdict into an SMTP reply.
// Lua scripts (core/lua) and plugins (core/pluginhost) implement Handler.
package hook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/sdk"
)

// Session is the read-only view of a connection handed to handlers.
type Session struct {
	ID       string
	Listener string     // listener name from the config
	ClientIP netip.Addr // remote IP
	Port     int        // remote port
	HELO     string     // EHLO/HELO argument, "" before it
	ESMTP    bool       // EHLO (not HELO) was used
	TLS      bool       // under TLS now
	AuthUser string     // authenticated identity, "" if none
}

// Request is one stage's question to the chain.
type Request struct {
	Stage    sdk.Stage
	Session  *Session
	Envelope *envelope.Envelope  // the transaction so far; nil before MAIL
	Rcpt     *envelope.Recipient // rcpt: the recipient being decided
	Command  string              // command: the verb, upper case
	Arg      string              // command: the argument as received; auth: the mechanism
}

// Result is the chain's answer: the decision, the effects gathered from the
// handlers that ran, and which handler decided ("" when none did).
type Result struct {
	Decision sdk.Decision
	Effects  sdk.Effects
	Handler  string
}

// Handler answers requests at the stages it declares.
type Handler interface {
	Name() string
	Handle(ctx context.Context, req *Request) (sdk.Decision, sdk.Effects, error)
}

// Dispatcher runs a stage. The SMTP server and the delivery engine depend on
// this interface; *Chain implements it.
type Dispatcher interface {
	Dispatch(ctx context.Context, req *Request) Result
}

// OnError is a handler's failure policy.
type OnError string

const (
	OnErrorDefer    OnError = "defer"
	OnErrorContinue OnError = "continue"
	OnErrorReject   OnError = "reject"
)

// Entry is one handler in the pipeline with its policy.
type Entry struct {
	Handler Handler
	Timeout time.Duration           // 0 = no deadline beyond the caller's
	OnError OnError                 // "" = defer
	Match   func(req *Request) bool // nil = every request
}

// Chain runs entries in pipeline order; the first non-continue verdict ends
// the stage. The zero Chain (or nil) runs nothing and answers Continue.
type Chain struct {
	entries []Entry
	log     *slog.Logger
}

// NewChain returns a chain over entries in order.
func NewChain(log *slog.Logger, entries ...Entry) *Chain {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Chain{entries: entries, log: log}
}

// Len returns the number of handlers.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.entries)
}

// ErrPanic is wrapped when a handler panics.
var ErrPanic = errors.New("hook: handler panicked")

// Dispatch implements Dispatcher.
func (c *Chain) Dispatch(ctx context.Context, req *Request) Result {
	var res Result
	if c == nil {
		return res
	}
	for _, e := range c.entries {
		if e.Match != nil && !e.Match(req) {
			continue
		}
		d, eff, err := c.call(ctx, e, req)
		name := e.Handler.Name()
		if err != nil {
			d = failure(e.OnError)
			d.Reason = err.Error()
			c.log.Warn("hook failed", "stage", req.Stage, "hook", name, "on_error", policy(e.OnError), "err", err)
		} else if verr := d.Validate(req.Stage); verr != nil {
			c.log.Error("hook returned an invalid decision; using the stage default", "stage", req.Stage, "hook", name, "err", verr)
			d = sdk.Decision{Verdict: d.Verdict, Reason: d.Reason}
			if d.Verdict > sdk.Drop {
				d = sdk.Decision{Verdict: sdk.Defer, Reason: "invalid verdict"}
			}
		}
		merge(&res.Effects, eff)
		if req.Stage.IsNotification() || d.Verdict == sdk.Continue {
			c.log.Debug("hook", "stage", req.Stage, "hook", name, "verdict", d.Verdict)
			continue
		}
		res.Decision, res.Handler = d, name
		c.log.Info("hook decided", "stage", req.Stage, "hook", name, "verdict", d.Verdict,
			"code", d.Code, "enhanced", d.Enhanced.String(), "reason", d.Reason)
		return res
	}
	return res
}

func (c *Chain) call(ctx context.Context, e Entry, req *Request) (d sdk.Decision, eff sdk.Effects, err error) {
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.Timeout)
		defer cancel()
	}
	defer func() {
		if r := recover(); r != nil {
			d, eff, err = sdk.Decision{}, sdk.Effects{}, fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	d, eff, err = e.Handler.Handle(ctx, req)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("hook %s: %w", e.Handler.Name(), ctx.Err())
	}
	return d, eff, err
}

func policy(p OnError) OnError {
	if p == "" {
		return OnErrorDefer
	}
	return p
}

// failure is the decision an on_error policy stands for.
func failure(p OnError) sdk.Decision {
	switch policy(p) {
	case OnErrorContinue:
		return sdk.Decision{}
	case OnErrorReject:
		return sdk.Decision{Verdict: sdk.Reject}
	}
	return sdk.Decision{Verdict: sdk.Defer, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, please try again later"}
}

func merge(dst *sdk.Effects, src sdk.Effects) {
	dst.AddHeaders = append(dst.AddHeaders, src.AddHeaders...)
	dst.RemoveHeaders = append(dst.RemoveHeaders, src.RemoveHeaders...)
	if len(src.Recipients) > 0 {
		dst.Recipients = src.Recipients
	}
	if src.Sender != nil {
		dst.Sender = src.Sender
	}
	if src.Body != nil {
		dst.Body = src.Body
	}
	for k, v := range src.Notes {
		if dst.Notes == nil {
			dst.Notes = make(map[string]string)
		}
		dst.Notes[k] = v
	}
	dst.Skip = append(dst.Skip, src.Skip...)
	if src.Route != nil {
		dst.Route = src.Route
	}
	if len(src.ReplyLines) > 0 {
		dst.ReplyLines = src.ReplyLines
	}
}
