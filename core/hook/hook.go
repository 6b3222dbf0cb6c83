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
	"slices"
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
	// Message is the content at the data and predelivery stages (nil
	// elsewhere): read-only and read lazily, so a handler that does not
	// look at it costs nothing.
	Message Message
	// Auth is the outcome of the checks of inbound mail (SPF, DKIM, DMARC,
	// ARC: core/mailauth) at the data stage; nil when none were made (the
	// authentication block is absent, or the client is in relay.networks
	// or authenticated).
	Auth *sdk.AuthResults

	// Skip names handlers (as Handler.Name reports them: "lua.<name>" for
	// a configured script) that this dispatch must not call. The chain
	// itself skips, for the rest of a dispatch, the handlers named in the
	// Effects.Skip of handlers that ran before them; Result.Effects.Skip
	// gathers those names, so a caller that wants skipping to last for the
	// transaction (Haraka's skip_plugins) keeps them and passes them here
	// in its later requests. Nil skips nothing.
	Skip []string

	// Notes are the notes written so far: by the handlers of the
	// connection and of the transaction (the caller keeps them), then by
	// the earlier handlers of this dispatch (the chain adds them).
	// Read-only: handlers write notes through Effects.Notes.
	Notes map[string]string
}

// Message is a read-only view of a message's content.
type Message interface {
	// Header returns the header fields in order, values unfolded.
	Header() ([]sdk.HeaderField, error)
	// Body returns at most limit bytes of the body (what follows the
	// header section); limit <= 0 means all of it.
	Body(limit int) ([]byte, error)
	// Size returns the size of the content in bytes.
	Size() int64
}

// Result is the chain's answer: the decision, the effects gathered from the
// handlers that ran (checked for the stage), and which handler decided (""
// when none did).
type Result struct {
	Decision sdk.Decision
	Effects  Effects
	Handler  string
}

// Handler answers requests at the stages it declares.
type Handler interface {
	Name() string
	Handle(ctx context.Context, req *Request) (sdk.Decision, sdk.Effects, error)
}

// Dispatcher runs a stage. The SMTP server and the delivery engine depend on
// this interface; *Chain implements it, and so does *Live, which serve
// hands them so that a reload can replace the chain under them.
type Dispatcher interface {
	Dispatch(ctx context.Context, req *Request) Result
}

// Runner is implemented by dispatchers that can tell whether a stage has
// handlers (*Chain, *Live): a caller may then spare building the request
// of a stage that runs none (the SMTP session's command stage runs for
// every verb).
type Runner interface {
	// Runs reports whether a dispatch of stage may call a handler.
	Runs(stage sdk.Stage) bool
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

	// Stages limits the entry to these stages (a match block's stage
	// list); nil = every stage. A Handler that also implements Stager is
	// called only at the stages both allow. NewChain works out once which
	// entries each stage runs, so a dispatch never looks at the others.
	Stages []sdk.Stage
}

// Stager is implemented by handlers that answer only some stages (a Lua
// script that defines on_rcpt and on_data, a plugin that declared its
// stages at handshake): the chain calls them only there. Stages is called
// once, when the chain is built.
type Stager interface {
	Stages() []sdk.Stage
}

// Chain runs entries in pipeline order; the first non-continue verdict ends
// the stage. The zero Chain (or nil) runs nothing and answers Continue. A
// Chain does not change once built, so any number of goroutines may
// dispatch on it.
type Chain struct {
	entries []Entry
	byStage [numStages][]Entry // the entries each stage of sdk.Stages runs, in order
	other   []Entry            // the entries of any other stage: those without a stage limit
	log     *slog.Logger
}

// NewChain returns a chain over entries in order.
func NewChain(log *slog.Logger, entries ...Entry) *Chain {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Chain{entries: entries, log: log}
	for _, e := range entries {
		var declared []sdk.Stage
		st, isStager := e.Handler.(Stager)
		if isStager {
			declared = st.Stages()
		}
		for _, stage := range sdk.Stages {
			if len(e.Stages) > 0 && !slices.Contains(e.Stages, stage) {
				continue
			}
			if isStager && !slices.Contains(declared, stage) {
				continue
			}
			i := stageIndex(stage)
			c.byStage[i] = append(c.byStage[i], e)
		}
		if len(e.Stages) == 0 && !isStager {
			c.other = append(c.other, e)
		}
	}
	return c
}

// numStages is the number of stages stageIndex knows: len(sdk.Stages).
const numStages = 12

// stageIndex numbers the stages of sdk.Stages from 0, and answers -1 for
// any other. A switch, not a map: it runs on every dispatch.
func stageIndex(s sdk.Stage) int {
	switch s {
	case sdk.StageConnect:
		return 0
	case sdk.StageHelo:
		return 1
	case sdk.StageAuth:
		return 2
	case sdk.StageMail:
		return 3
	case sdk.StageRcpt:
		return 4
	case sdk.StageCommand:
		return 5
	case sdk.StageData:
		return 6
	case sdk.StagePredelivery:
		return 7
	case sdk.StageDelivered:
		return 8
	case sdk.StageDeferred:
		return 9
	case sdk.StageBounced:
		return 10
	case sdk.StageDisconnect:
		return 11
	}
	return -1
}

// forStage returns the entries that run at stage, in order.
func (c *Chain) forStage(stage sdk.Stage) []Entry {
	if i := stageIndex(stage); i >= 0 {
		return c.byStage[i]
	}
	return c.other
}

// Runs implements Runner: whether stage has entries (whose matchers and
// skips may still pass them by).
func (c *Chain) Runs(stage sdk.Stage) bool {
	return c != nil && len(c.forStage(stage)) > 0
}

// MaxDuration is the longest a dispatch on c can take given its handlers'
// timeouts: their sum. A handler without a timeout is counted as def.
func (c *Chain) MaxDuration(def time.Duration) time.Duration {
	var d time.Duration
	if c == nil {
		return 0
	}
	for _, e := range c.entries {
		if e.Timeout > 0 {
			d += e.Timeout
		} else {
			d += def
		}
	}
	return d
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

// Dispatch implements Dispatcher. Each handler's effects are checked
// for the stage (checkEffects) before they count, and the notes it writes
// are in the request the later handlers get.
func (c *Chain) Dispatch(ctx context.Context, req *Request) Result {
	var res Result
	if c == nil {
		return res
	}
	entries := c.forStage(req.Stage)
	for i := range entries {
		e := &entries[i] // not copied: an Entry is 72 bytes
		name := e.Handler.Name()
		if skipped(name, req.Skip, res.Effects.Skip) {
			c.log.Debug("hook skipped", "stage", req.Stage, "hook", name)
			continue
		}
		if e.Match != nil && !e.Match(req) {
			continue
		}
		d, notes := c.run(ctx, e, name, req, &res.Effects)
		if len(notes) > 0 {
			r := *req // the caller's request stays as it was
			r.Notes = MergeNotes(req.Notes, notes)
			req = &r
		}
		if req.Stage.IsNotification() || d.Verdict == sdk.Continue {
			if c.log.Enabled(ctx, slog.LevelDebug) { // spares boxing the arguments on the common path
				c.log.Debug("hook", "stage", req.Stage, "hook", name, "verdict", d.Verdict)
			}
			continue
		}
		res.Decision, res.Handler = d, name
		if c.log.Enabled(ctx, slog.LevelInfo) {
			c.log.Info("hook decided", "stage", req.Stage, "hook", name, "verdict", d.Verdict,
				"code", d.Code, "enhanced", d.Enhanced.String(), "reason", d.Reason)
		}
		return res
	}
	return res
}

// run calls one handler (name is its Name) and checks its answer: a
// failure (an error, a panic, the deadline, a malformed effect) becomes
// the entry's on_error decision without effects; an invalid decision
// falls back to the stage default; effects the stage does not take are
// removed with a warning. The effects that count are merged into *into
// (not copied out: a handler that gives none costs no merge), and the
// notes among them returned.
func (c *Chain) run(ctx context.Context, e *Entry, name string, req *Request, into *Effects) (sdk.Decision, map[string]string) {
	d, given, err := c.call(ctx, e, name, req)
	var eff Effects
	if err == nil && !given.IsZero() {
		var off []Effect
		utf8 := req.Envelope != nil && req.Envelope.SMTPUTF8
		eff, off, err = checkEffects(req.Stage, name, utf8, given)
		if len(off) > 0 {
			c.log.Warn("hook gave effects its stage does not take; ignored", "stage", req.Stage, "hook", name, "effects", joinEffects(off))
		}
	}
	if err != nil {
		d = failure(e.OnError)
		d.Reason = err.Error()
		c.log.Warn("hook failed", "stage", req.Stage, "hook", name, "on_error", policy(e.OnError), "err", err)
		return d, nil
	}
	if verr := d.Validate(req.Stage); verr != nil {
		c.log.Error("hook returned an invalid decision; using the stage default", "stage", req.Stage, "hook", name, "err", verr)
		d = sdk.Decision{Verdict: d.Verdict, Reason: d.Reason}
		if d.Verdict > sdk.Drop {
			d = sdk.Decision{Verdict: sdk.Defer, Reason: "invalid verdict"}
		}
	}
	if !given.IsZero() {
		into.merge(eff)
	}
	return d, eff.Notes
}

// skipped reports whether name is in either list.
func skipped(name string, byCaller, byHooks []string) bool {
	return (len(byCaller) > 0 && slices.Contains(byCaller, name)) ||
		(len(byHooks) > 0 && slices.Contains(byHooks, name))
}

func (c *Chain) call(ctx context.Context, e *Entry, name string, req *Request) (d sdk.Decision, eff sdk.Effects, err error) {
	if e.Timeout > 0 {
		dl := withTimeout(ctx, e.Timeout)
		defer dl.stop()
		ctx = dl
	}
	defer func() {
		if r := recover(); r != nil {
			d, eff, err = sdk.Decision{}, sdk.Effects{}, fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	d, eff, err = e.Handler.Handle(ctx, req)
	if err == nil {
		if cerr := Expired(ctx); cerr != nil {
			err = fmt.Errorf("hook %s: %w", name, cerr)
		}
	}
	return d, eff, err
}

// Expired reports whether ctx is done, or past its deadline although its
// timer has not fired yet: ctx.Err() stays nil until then, while I/O bound
// by ctx.Deadline() (socket deadlines) may already have given up. A
// handler's answer that comes after its deadline does not count.
func Expired(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, ok := ctx.(*deadline); ok {
		return nil // its Err looked at the clock
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= 0 {
		return context.DeadlineExceeded
	}
	return nil
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
		// A local processing error, not a policy decision (550 5.7.1).
		return sdk.Decision{Verdict: sdk.Reject, Code: 554, Enhanced: sdk.EnhancedCode{5, 3, 0}, Message: "Local processing error"}
	}
	return sdk.Decision{Verdict: sdk.Defer, Code: 451, Enhanced: sdk.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, please try again later"}
}
