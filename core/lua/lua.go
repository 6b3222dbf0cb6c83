// Package lua hosts the gateway's policy scripts: Lua 5.1 run by
// gopher-lua, compiled once per script, executed on a pool of sandboxed
// states, with the gw module (verdict constructors, logging, DNS, address,
// CIDR and glob helpers, a durable and an ephemeral key-value store and the
// script's HCL params) preloaded as a global. DNS, the stores and logging
// are the host services of core/hostsvc, which plugins get too, with the
// same limits and error texts. A *Script is a hook.Handler.
//
// # Calling convention
//
// For stage X the host calls the script's global function on_X(ctx) (on_connect,
// on_helo, on_auth, on_mail, on_rcpt, on_command, on_data, on_predelivery,
// on_delivered, on_deferred, on_bounced, on_disconnect). A stage without its
// function answers Continue without touching a Lua state. The function returns
// a verdict built by gw.continue, gw.accept, gw.reject, gw.defer or gw.drop,
// or nil (= continue). Anything else is an error.
//
// The ctx argument is a read-only userdata, valid only during the call;
// ctx.conn and ctx.txn are read-only userdata too (index them by the field
// names below; pairs does not list them), their tables are plain tables:
//
//	ctx.stage        "rcpt", …
//	ctx.conn         .id, .listener, .ip ("" if unknown), .port, .helo,
//	                 .esmtp, .tls, .auth_user ("" if none). Requests from the
//	                 queue (predelivery and the notifications) have no
//	                 session: ip, helo, tls and auth_user come from the
//	                 envelope, id and listener are "", port 0
//	ctx.txn          nil before MAIL, else:
//	  .sender        "local@domain", "" for <>
//	  .recipients    array of the recipients accepted so far (predelivery:
//	                 the destination's, which set_recipients replaces)
//	  .rcpt          the recipient being decided (rcpt; at predelivery the
//	                 first recipient of the destination), else nil
//	  .notify        with rcpt: array of "NEVER", "SUCCESS", "FAILURE",
//	                 "DELAY" (empty when not given); else nil
//	  .orcpt         with rcpt: the ORCPT parameter or nil
//	  .params        {ret, envid, smtputf8, body, size, auth, requiretls} of
//	                 MAIL FROM, and tls_optional: the message's header says
//	                 "TLS-Required: No" (RFC 8689; from data on)
//	ctx.command      command stage: the verb in upper case; else nil
//	ctx.arg          command: the argument; auth: the mechanism; predelivery:
//	                 the destination domain; else nil
//	ctx.msg          data and predelivery: the message (see below); else nil
//	ctx.auth         data: the checks of inbound mail (the authentication
//	                 block), nil when none were made (no block, or a client
//	                 in relay.networks or authenticated):
//	  .spf           {result, domain}: "pass", "fail", "softfail", "neutral",
//	                 "none", "temperror", "permerror"; the MAIL FROM (or HELO) domain
//	  .dkim          array of {result, domain, selector}, one per signature
//	  .dmarc         {result, policy, domain}: policy "none", "quarantine",
//	                 "reject" (after pct), "" without a record
//	  .arc           {result}
//	ctx.notes        the notes written so far, by this script and the others:
//	                 {["lua.relay/score"] = "5", ["plugin.x/list"] = …}; a
//	                 copy (changing it changes nothing)
//	ctx:set_recipients({"a@x", …})   rcpt, data, predelivery → Effects.Recipients
//	ctx:set_sender("x@y")             mail, data, predelivery → Effects.Sender ("" = <>)
//	ctx:set_route{transport=, via=}   predelivery → Effects.Route ("" = unchanged)
//	ctx:reply_lines({…})              command → Effects.ReplyLines (VRFY/EXPN)
//	ctx:skip("lua.other", …)          → Effects.Skip
//	ctx:note(key, value)              → Effects.Notes["lua.<name>/<key>"]
//
// A note is seen (ctx.notes, a plugin's Request.Notes) by the later hooks
// of the same stage and of the later stages of its transaction, and ends
// with the transaction (RSET, the end of DATA); a note written outside a
// transaction (connect, helo) lasts for the connection. Predelivery and
// the queue notifications see none. Keys are at most 200 bytes with the
// "lua.<name>/" prefix, values 4096, 1000 notes a call.
//
// Malformed arguments to a setter (a bad address, CR or LF in a header
// value) raise an error. A setter used at a stage that does not take its
// effect (the chain's table, hook.Effect.Stages) is no error: the chain
// drops the effect with a warning naming the script, as it does a
// plugin's. The chain checks the effects again, as it does a plugin's: an
// address must also pass as the path would on the wire (UTF-8 only in an
// SMTPUTF8 transaction), and recipients are each mailbox once.
//
// The message (ctx.msg) reads the message as received; the script's own edits
// are not reflected back:
//
//	msg:header(name)        first value of the field (case-insensitive) or nil
//	msg:headers(name)       array of every value of the field
//	msg:header_names()      array of field names in order (repeats included)
//	msg:size()              bytes of the whole message
//	msg:body()              the body (after the blank line) up to Options.BodyLimit
//	                        bytes, and true as a second result if it was cut
//	msg:add_header(n, v)    → Effects.AddHeaders
//	msg:remove_header(n)    → Effects.RemoveHeaders
//	msg:set_header(n, v)    remove_header(n) then add_header(n, v)
//	msg:set_body(s)         → Effects.Body = the received header fields, a blank
//	                        line, then s (bare LF turned into CRLF); header edits
//	                        still apply on top of it
//
// Globals a script sets persist in the state that ran it, and there are
// several states: keep nothing in globals across calls (use gw.ephemeral
// or gw.durable). The on_* functions called are those the top level
// defined: a state looks them up once, when its top level has run, so a
// function assigned to on_rcpt (or nil) later, in a call, changes
// nothing.
// Coroutines work within one call.
//
// # The gw module
//
// gw is a global in every state (no require). Verdicts (every argument
// optional; code 0 or nil and enhanced nil or "" mean the stage default;
// text is the client-visible line, reason goes to the logs only):
//
//	gw.continue()
//	gw.accept([code[, enhanced[, text[, reason]]]])   e.g. gw.accept(250, "2.1.5", "OK")
//	gw.reject([code[, enhanced[, text[, reason]]]])   e.g. gw.reject(550, "5.7.1", "Relaying denied")
//	gw.defer([code[, enhanced[, text[, reason]]]])
//	gw.drop([reason])
//	v:reason(text)    sets the reason; returns v
//	v:disconnect()    reply, then close (reject and defer); returns v
//	v.verdict, v.code, v.enhanced, v.text   read-only ("reject", 550, "5.7.1" or nil, "…")
//
// A malformed enhanced code ("5.7") or a code that is not an integer from 0
// to 999 raises an error at the call; other mistakes (a 250 with reject)
// are left to Decision.Validate.
//
//	gw.log(level, msg[, fields])  level "debug", "info", "warn" or "error"
//	                              (another raises an error); fields a table
//	                              of string keys: the first 32 by key are
//	                              logged, strings cut at 1024 bytes; msg is
//	                              made one line and cut at 2048 bytes
//	gw.params                     the HCL params as Lua values (a copy per
//	                              state: do not modify it)
//	gw.time()                     Unix time in seconds, with fraction
//	gw.glob(pattern, s)           * and ?, case-insensitive → bool
//	gw.cidr.contains(c, ip)       c a CIDR or an array of them (a bare IP is a
//	                              /32 or /128); a bad ip is false, a bad
//	                              CIDR raises an error → bool
//	gw.addr.parse(s)              {["local"]=, domain=} or nil, "error text"
//	gw.addr.domain(s)             the domain or nil
//	gw.addr.localpart(s)          the local part or nil
//
// DNS, through the gateway's resolver and the call's deadline; each returns
// its result, or nil, "error text", temporary (true for SERVFAIL, timeouts
// and the like, and for a gateway without a resolver; false for NXDOMAIN
// and other permanent answers). A name without records of the type gives
// an empty array (TXT, PTR, MX).
//
//	gw.dns.mx(domain)    {{host = "mx1.example", pref = 10}, …} by preference
//	gw.dns.a(host)       {"192.0.2.1", "2001:db8::1"} (A then AAAA)
//	gw.dns.txt(name)     {"v=spf1 -all", …} (strings of a record joined)
//	gw.dns.ptr(ip)       {"host.example", …}
//
// Two key-value stores, with the same functions; pick by what losing the
// data would cost:
//
//	gw.durable     the spool's database: survives a restart, and every
//	               write (set, incr, delete) is a disk commit (an fsync,
//	               shared with the messages being queued) before it
//	               returns. For what must not be forgotten: greylisting
//	               triplets, allow lists learnt at run time.
//	gw.kv          the same table as gw.durable (the name scripts used
//	               before there were two kinds)
//	gw.ephemeral   in the gateway's memory: a write never touches the disk,
//	               everything is lost on restart, and when the store is
//	               full (it is bounded in entries and bytes) it drops the
//	               entries closest to expiry. For what may be lost: rate
//	               counters, per-transaction marks.
//
// Keys are stored as "<name>/<key>", so scripts do not see each other's
// keys (nor plugins', under "plugin.<name>/"). A key is 1 to 512 bytes, a
// value at most 64 KiB, a ttl from 0 (no expiry, the default) to 100 years
// in seconds, fractions allowed. A broken limit or a failure of the store
// raises an error ("gw.ephemeral.incr: hostsvc: …"), and so does an incr of
// a value that is not an integer.
//
//	gw.durable.get(key)                          the value (a string) or nil
//	gw.durable.set(key, value[, ttl_seconds])    value a string, number or boolean
//	gw.durable.incr(key[, delta[, ttl_seconds]]) → the new number; ttl applies when
//	                                             the key is created (or had expired)
//	gw.durable.delete(key)
//	gw.ephemeral.get, .set, .incr, .delete       the same, in memory
//
// # Sandbox and limits
//
// A state has base (without dofile, loadfile, load, loadstring, require,
// module, collectgarbage, getfenv, setfenv, newproxy; print logs at debug),
// string (without dump), table, math, coroutine and an os table with only
// time, date and clock. There is no io, package, debug or channel. The
// call depth is 200.
//
// A call honours its deadline whatever the script does, and its state
// cannot take more than Options.MaxMemory (max_memory in the lua block):
//
//   - The call runs under a meter, a context wrapping the request's
//     (meter.go). gopher-lua's VM calls its Done before every instruction,
//     and the meter looks at the request's context at the first one and
//     every 1024 after (microseconds apart), as do the host functions
//     below before they make 64 KiB or more: a deadline or a
//     cancellation stops loops, tail-call loops and coroutines (which run
//     under the same meter) there, for good. Every 1024 instructions are
//     charged to the state's memory account at 128 bytes each (measured:
//     a table of four fields made in a loop takes about 115 bytes per
//     instruction, garbage included).
//   - What the VM does not do in instructions is done by the state's own
//     functions (strlib.go, patlib.go, tablib.go, corolib.go): string.rep,
//     sub, char, byte, format, upper, lower, reverse, find, match, gmatch
//     and gsub, table.concat and sort, unpack, coroutine.create and wrap,
//     os.date, and msg:body, set_body and add_header charge what they make
//     before they make it, and those that loop look at the deadline every
//     few thousand steps. Patterns are Lua 5.1's, matched by
//     core/lua/pattern, which counts its steps: a pathological pattern on
//     a long subject ends at the deadline. (A leading '^' in gmatch is a
//     plain character, as in Lua 5.1; a malformed pattern is an error even
//     where the search would not reach it.)
//   - The .. operator is compiled into a call of the state's concatenation
//     function (concat.go rewrites the syntax tree: gopher-lua's OP_CONCAT
//     joins in one step that nothing can check), which charges the result.
//   - When what a state held at its last measurement and what it has been
//     charged since would pass MaxMemory, the state is measured again: the
//     values its globals, registry, string metatable and running frames
//     (locals and temporaries) reach, counted by estimates of gopher-lua's
//     layout (walk.go); garbage no longer counts. A state found holding
//     more than half of MaxMemory, or without room for what it asks, fails
//     the call for good: pcall cannot catch it, the call returns an error
//     wrapping ErrMemoryLimit that says where, the chain applies on_error,
//     and the state is discarded, its memory given back to the Go
//     collector. The other half is room for what the state makes between
//     two measurements, so a state is measured only after making as much
//     as it holds, and measuring costs at worst about as much as the work
//     it watches. Long strings are made in copies of 256 KiB (text.go), so
//     a garbage collection never waits for a long copy.
//
// The estimates are of gopher-lua's layout, not the Go heap: a state's
// share of the process is within a small factor of MaxMemory, not exact.
// The value stack may use an eighth of MaxMemory (MaxMemory/128 slots;
// more values at once, as unpack of a huge table, fail with "registry
// overflow") and is counted at that size; a coroutine's value stack has
// 8192 slots and is counted at that size. A measurement does not see the
// extra arguments (...) of a running vararg function, what only a
// coroutine that has not started yet holds, and the frames below one that
// made hundreds of tail calls.
//
// # Errors
//
// A Lua runtime error, a bad return value or a misused binding makes Handle
// return a *ScriptError whose text names file:line; a deadline or
// cancellation makes it return an error wrapping the context's error, and
// the memory limit one wrapping ErrMemoryLimit. Each way the state that
// ran the call is discarded and the chain applies the hook's on_error
// policy. Invalid decisions (say gw.reject(250, …)) are
// returned as given: the chain validates them and falls back to the stage
// default.
package lua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	glua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/ast"
	"github.com/yuin/gopher-lua/parse"

	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/hostsvc"
	"github.com/mailgate/gateway/sdk"
)

// Defaults for Options.
const (
	DefaultMaxMemory = 64 << 20 // bytes
	DefaultBodyLimit = 1 << 20  // bytes

	callStackSize = 200             // Lua call depth
	registryStart = 1024            // initial value-stack slots per state
	registryShare = 8               // the value stack may use 1/registryShare of MaxMemory
	slotBytes     = 16              // one LValue (an interface) per slot
	initTimeout   = 5 * time.Second // bound on running the chunk's top level
)

// Options configure a Script.
type Options struct {
	Name   string // handler name without the "lua." prefix, e.g. "relay"
	Path   string // the script file
	Source string // the script text, instead of Path (tests); chunk name Name+".lua"
	// Params are the script's params from HCL, seen as gw.params: string,
	// float64, int, int64, bool, []any, []string and map[string]any values.
	// Each new state converts it again: do not change it after Load.
	Params map[string]any
	// Services are behind gw.dns, gw.durable (gw.kv), gw.ephemeral and
	// gw.log, in the script's own scope (its keys are stored as
	// "<Name>/<key>"). Nil = services without a resolver or a durable
	// store (their calls fail), with an in-memory ephemeral store of the
	// script's own, logging to Log.
	Services *hostsvc.Services
	Log      *slog.Logger // the script's errors and print; nil = discard
	Pool     int          // most states alive at once; <= 0 = GOMAXPROCS*4
	// MaxMemory (bytes, <= 0 = DefaultMaxMemory) is the most a state may
	// take, what it holds and what it makes between two measurements: a
	// call that would pass it fails with ErrMemoryLimit (see "Sandbox and
	// limits"). An eighth of it is the value stack.
	MaxMemory int
	BodyLimit int64 // most body bytes msg:body() returns; <= 0 = DefaultBodyLimit
}

// ScriptError is a failure of the script itself: a runtime error, a bad
// return value, a misused binding. Msg starts with file:line where known.
type ScriptError struct {
	Hook  string // "lua.relay"
	Func  string // "on_rcpt", or "top level" for the chunk's top level
	Msg   string
	Trace string // the Lua stack traceback, for debug logs
}

func (e *ScriptError) Error() string {
	if e.Func == "" {
		return e.Hook + ": " + e.Msg
	}
	return e.Hook + ": " + e.Func + ": " + e.Msg
}

// ErrClosed is returned by Handle after Close.
var ErrClosed = errors.New("lua: script closed")

// Script is a compiled script and its pool of states. It is safe for
// concurrent use.
type Script struct {
	name      string // "lua.<Name>"
	chunk     string // chunk name used in messages
	proto     *glua.FunctionProto
	stages    []sdk.Stage
	funcs     []string // funcs[i] is the on_* global of stages[i]
	params    map[string]any
	host      *hostsvc.Scope
	log       *slog.Logger
	maxMemory int
	bodyLimit int64

	pool    pool
	created atomic.Int64 // states made since Load (tests)
}

var (
	_ hook.Handler = (*Script)(nil)
	_ hook.Stager  = (*Script)(nil)
)

// Load compiles the script, runs its top level once in a fresh sandboxed
// state to learn which on_* functions it defines (with a deadline of 5s),
// and returns it ready for Handle; that state serves the first call. Compile
// and top-level errors name file:line. Later states run the top level again,
// under the deadline of the call that needs them.
func Load(opt Options) (*Script, error) {
	if opt.Name == "" {
		return nil, errors.New("lua: load: no name")
	}
	s := &Script{
		name:      "lua." + opt.Name,
		params:    opt.Params,
		log:       opt.Log,
		maxMemory: opt.MaxMemory,
		bodyLimit: opt.BodyLimit,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	svc := opt.Services
	if svc == nil {
		svc = hostsvc.New(hostsvc.Options{Log: s.log})
	}
	s.host = svc.Script(opt.Name)
	s.log = s.log.With("hook", s.name)
	if s.maxMemory <= 0 {
		s.maxMemory = DefaultMaxMemory
	}
	if s.bodyLimit <= 0 {
		s.bodyLimit = DefaultBodyLimit
	}
	pool := opt.Pool
	if pool <= 0 {
		pool = runtime.GOMAXPROCS(0) * 4
	}
	s.pool.init(pool)

	var src io.Reader
	switch {
	case opt.Path != "":
		f, err := os.Open(opt.Path)
		if err != nil {
			return nil, fmt.Errorf("lua: load %s: %w", s.name, err)
		}
		defer f.Close()
		src, s.chunk = f, opt.Path
	default:
		src, s.chunk = strings.NewReader(opt.Source), opt.Name+".lua"
	}
	if err := checkParams(opt.Params); err != nil {
		return nil, fmt.Errorf("lua: load %s: params: %w", s.name, err)
	}
	chunk, err := parse.Parse(src, s.chunk)
	if err != nil {
		return nil, fmt.Errorf("lua: load %s: %s", s.name, parseError(s.chunk, err))
	}
	if chunk, err = wrapChunk(chunk); err != nil {
		return nil, fmt.Errorf("lua: load %s: %s: %w", s.name, s.chunk, err)
	}
	s.proto, err = compile(chunk, s.chunk)
	if err != nil {
		return nil, fmt.Errorf("lua: load %s: %s", s.name, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), initTimeout)
	defer cancel()
	st, err := s.newState(ctx)
	if err != nil {
		return nil, fmt.Errorf("lua: load: %w", err)
	}
	for _, stage := range sdk.Stages {
		name := "on_" + string(stage)
		if fn, ok := st.L.GetGlobal(name).(*glua.LFunction); ok && fn != nil {
			s.funcs = append(s.funcs, name)
			s.stages = append(s.stages, stage)
		}
	}
	st.lookupFuncs()
	// The probe state is as good as any: keep it for the first call.
	s.pool.live <- struct{}{}
	s.pool.idle = append(s.pool.idle, st)
	return s, nil
}

// compile turns a parsed chunk into a prototype, reporting errors as
// file:line: message.
func compile(chunk []ast.Stmt, name string) (proto *glua.FunctionProto, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: compile: %v", name, r)
		}
	}()
	proto, err = glua.Compile(chunk, name)
	if ce, ok := errors.AsType[*glua.CompileError](err); ok {
		return nil, fmt.Errorf("%s:%d: %s", name, ce.Line, ce.Message)
	}
	return proto, err
}

func parseError(name string, err error) string {
	if pe, ok := errors.AsType[*parse.Error](err); ok {
		if pe.Pos.Line == parse.EOF {
			return fmt.Sprintf("%s: at end of file: %s", name, pe.Message)
		}
		return fmt.Sprintf("%s:%d: %s near '%s'", name, pe.Pos.Line, pe.Message, pe.Token)
	}
	return strings.TrimSpace(err.Error())
}

// Name implements hook.Handler: "lua.<Options.Name>".
func (s *Script) Name() string { return s.name }

// Stages returns the stages the script has an on_* function for, in
// sdk.Stages order.
func (s *Script) Stages() []sdk.Stage { return append([]sdk.Stage(nil), s.stages...) }

// Handle implements hook.Handler: it calls on_<stage>(ctx) on a pooled state.
// It returns the verdict and the effects the script recorded, or an error
// and no effects.
func (s *Script) Handle(ctx context.Context, req *hook.Request) (d sdk.Decision, eff sdk.Effects, err error) {
	i := s.stageIndex(req.Stage)
	if i < 0 {
		return sdk.Decision{}, sdk.Effects{}, nil
	}
	name := s.funcs[i]
	st, err := s.get(ctx)
	if err != nil {
		return sdk.Decision{}, sdk.Effects{}, err
	}
	ok := false
	defer func() {
		if r := recover(); r != nil {
			d, eff = sdk.Decision{}, sdk.Effects{}
			err = &ScriptError{Hook: s.name, Func: name, Msg: fmt.Sprintf("host panic: %v", r)}
			ok = false
		}
		s.put(st, ok)
	}()
	d, eff, err = st.call(ctx, i, req, req.Message)
	ok = err == nil
	if ok && st.waited {
		// The script finished (say, after a DNS look-up failed on the
		// deadline) but too late: its answer does not count. A call that
		// used no host service and read no body ran only instructions,
		// which the meter holds to the deadline, and the chain looks
		// again.
		if cerr := hook.Expired(ctx); cerr != nil {
			return sdk.Decision{}, sdk.Effects{}, fmt.Errorf("%s: %s: %w", s.name, name, cerr)
		}
	}
	return d, eff, err
}

// stageIndex returns the index in s.stages of stage, -1 if the script
// has no function for it: a scan of the few stages a script defines,
// which reads less memory than a map would.
func (s *Script) stageIndex(stage sdk.Stage) int {
	for i, st := range s.stages {
		if st == stage {
			return i
		}
	}
	return -1
}
