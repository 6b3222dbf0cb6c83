package delivery

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailgate/gateway/core/config"
	"github.com/mailgate/gateway/core/dkim"
	"github.com/mailgate/gateway/core/dsn"
	"github.com/mailgate/gateway/core/envelope"
	"github.com/mailgate/gateway/core/hook"
	"github.com/mailgate/gateway/core/queue"
	"github.com/mailgate/gateway/core/workers"
)

// Options configure an Engine.
type Options struct {
	Spool    *queue.Spool
	Hostname string          // Reporting-MTA of DSNs, EHLO name
	Config   config.Delivery // routes, retry schedule, lifetime, limits, postmaster
	// Transports by name: "smtp", "lmtp", "maildir", plugin transports.
	// The engine only calls Deliver: whoever creates a transport closes it
	// (an SMTP transport's idle connections, a plugin), after Run returns.
	Transports map[string]Transport
	Hooks      hook.Dispatcher // predelivery and the delivered/deferred/bounced notifications; nil = none
	Observer   Observer        // metrics; nil = none
	Log        *slog.Logger
	Now        func() time.Time // nil = time.Now (tests use a fake clock)
	// DKIM is the keys outbound mail is signed with (engine_sign.go);
	// nil = none. SetDKIM replaces them.
	DKIM *dkim.Keys
	// MaxHops is the most Received fields a message may have arrived
	// with (config.Config.MaxHops: the listeners' max_hops); a queued
	// message with more than MaxHops+1 (ours) is taken for a mail loop
	// and fails with 5.4.6. 0 = config's default.
	MaxHops int
}

// Observer receives what metrics need; core/admin implements it.
type Observer interface {
	// Attempted reports one recipient's outcome of one attempt, the TLS
	// level it ran under (Result.TLSPolicy: "" for a transport other than
	// smtp) and how long the attempt took.
	Attempted(domain string, class Class, tlsPolicy string, took time.Duration)
	// Bounced reports a DSN queued (action "failed" or "delayed").
	Bounced(action dsn.Action)
}

// Stats are the engine's counters since start.
type Stats struct {
	InFlight  int   // messages being delivered now, or set aside because their domains are held
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

// maxSleep is the longest the scheduler sleeps without looking at the
// spool: a safety net for due times it could not know about.
const maxSleep = time.Minute

// busyRescan is the shortest wait between two scans while due messages
// wait for capacity (see nextScan).
const busyRescan = time.Second

// maxCandidates bounds the due messages the scheduler remembers, after a
// scan, as waiting for capacity; past it the scan stops and resumes once
// they are started.
const maxCandidates = 4096

// Engine schedules and performs deliveries of the spool's messages.
//
// How it works: one scheduler goroutine (Run) scans Spool.Due when kicked,
// when the earliest due time it knows of arrives (at least once a minute),
// and after an attempt frees capacity. A due message is leased in memory
// (so that nothing dispatches it twice), read again from the spool, and
// split into one job per destination domain of its Pending and Deferred
// recipients: a delivery round. Each job runs in its own goroutine when
// both the total and the domain's connection limit allow; the others wait
// in the round without holding up other domains. A job records its
// recipients' outcomes with one Spool.Update (queuing the bounce it needs
// first); the round's last job also sends the round's one success DSN,
// sets the message's next attempt, sends the delay warning, or deletes
// the finished message. Nothing but the leases and the success DSN
// waiting for the round's end lives only in memory: after a crash every
// unfinished message is simply due again (at-least-once), and a success
// DSN is at worst lost (see sendSuccesses).
type Engine struct {
	opt        Options
	cfg        config.Delivery // opt.Config with defaults
	spool      *queue.Spool
	log        *slog.Logger
	now        func() time.Time
	postmaster envelope.Address // null = none
	holds      *holds           // held domains (hold.go)
	hopLimit   int              // Received fields a queued message may carry: MaxHops and ours
	dkim       atomic.Pointer[dkim.Keys]
	arc        atomic.Pointer[ARCSealing]

	kick    chan struct{} // rescan the spool (Kick)
	parking chan struct{} // a slot per held message being set aside (park)
	fresh   chan enqueued // newly queued messages, due now and leased (Enqueue)
	wake    chan struct{} // an attempt ended: start what waits for capacity
	running atomic.Bool
	jobs    sync.WaitGroup

	mu        sync.Mutex
	rng       *rand.Rand              // retry jitter
	leases    map[string]*engineRound // in-flight messages; nil = held by an admin operation, expected or being started
	expected  map[string]struct{}     // leased by Expect, not yet handed over by Enqueue
	rounds    int                     // leases with a round (Stats.InFlight)
	active    int                     // jobs in flight
	perDomain map[string]int          // jobs in flight per destination domain
	runners   *workers.Pool           // the jobs' goroutines, kept for reuse during a Run
	waiting   []*engineRound          // rounds with jobs not yet started, in lease order
	soonest   time.Time               // earliest NextAttempt set by a round since the scheduler last looked
	down      map[string]*downDest    // destinations whose last job reached no server (engine_park.go)
	releases  uint64                  // domains found up again since start (engine_park.go)

	// Scheduler goroutine only.
	candidates []dueCandidate // due messages that waited for capacity at the last scan
	truncated  bool           // the last scan stopped at maxCandidates

	delivered, deferred, failed, dsns atomic.Int64
}

// dueCandidate is a due message the scheduler could not start for lack of
// capacity.
type dueCandidate struct {
	id      string
	domains []string
}

// engineRound is one delivery round of a leased message: its jobs, one
// per destination domain.
type engineRound struct {
	id      string
	env     envelope.Envelope // as leased; read-only
	size    int64
	created time.Time

	mu         sync.Mutex            // serialises the recording of the round's jobs
	msg        *queue.Message        // the message as recorded so far; guarded by mu
	last       map[int]rcptOutcome   // latest outcome per recipient this round; guarded by mu
	successes  []dsn.RecipientReport // success DSN entries of the jobs recorded so far, sent by the last; guarded by mu
	pending    []*destGroup          // jobs not started yet; guarded by Engine.mu
	unfinished int                   // jobs not yet recorded; guarded by Engine.mu

	parked  bool   // the last job parked the message (engine_park.go); guarded by mu
	parkGen uint64 // Engine.releases when it did; guarded by mu

	retryAsked bool // an operator's Retry came while the round was in flight; guarded by Engine.mu

	hopsOnce   sync.Once
	storedHops int // the message's Hops as leased; read-only
	hops       int
	hopsErr    error
	body       []byte // the whole message when small: handed over by Enqueue, or set once by hopCount
}

// New checks opt and returns an engine; Run starts it.
func New(opt Options) (*Engine, error) {
	if opt.Spool == nil {
		return nil, errors.New("delivery: no spool")
	}
	if strings.TrimSpace(opt.Hostname) == "" {
		return nil, errors.New("delivery: no hostname")
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opt.Now
	if now == nil {
		now = time.Now
	}
	cfg := withDefaults(opt.Config)
	maxHops := opt.MaxHops
	if maxHops <= 0 {
		maxHops = config.DefaultListener("").MaxHops
	}
	for _, rt := range cfg.Routes {
		name := rt.Transport
		if name == "" {
			name = "smtp"
		}
		if opt.Transports[name] == nil {
			log.Warn("delivery: route names an unknown transport; its mail will be deferred", "domain", rt.Domain, "transport", name)
		}
	}
	holds, err := loadHolds(opt.Spool, cfg.HoldDomains, now())
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	crand.Read(seed[:]) // never fails (crypto/rand since Go 1.24)
	e := &Engine{
		holds:      holds,
		opt:        opt,
		cfg:        cfg,
		spool:      opt.Spool,
		log:        log,
		now:        now,
		postmaster: postmasterAddress(cfg.Postmaster, opt.Hostname),
		hopLimit:   maxHops + 1,
		kick:       make(chan struct{}, 1),
		parking:    make(chan struct{}, maxParking),
		fresh:      make(chan enqueued, maxCandidates),
		wake:       make(chan struct{}, 1),
		rng:        rand.New(rand.NewChaCha8(seed)),
		leases:     make(map[string]*engineRound),
		expected:   make(map[string]struct{}),
		perDomain:  make(map[string]int),
		down:       make(map[string]*downDest),
	}
	e.dkim.Store(opt.DKIM)
	return e, nil
}

// Run delivers due messages until ctx is done, then waits for attempts in
// flight to finish (they see ctx cancelled) and returns.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("delivery: engine already running")
	}
	defer e.running.Store(false)
	runners := workers.New(e.cfg.MaxConnections)
	e.mu.Lock()
	e.runners = runners
	e.mu.Unlock()
	e.schedule(ctx)
	e.jobs.Wait()
	runners.Close()
	e.sendCutShortSuccesses(context.WithoutCancel(ctx))

	e.mu.Lock()
	clear(e.leases) // rounds cut short by the shutdown: their messages stay due
	clear(e.expected)
	e.rounds, e.waiting = 0, nil
	e.mu.Unlock()
	e.candidates, e.truncated = nil, false
	for len(e.fresh) > 0 { // handed over, not started: a later Run's scan finds them
		<-e.fresh // the scheduler, the only receiver, has stopped
	}
	return nil
}

// Kick tells the engine that mail may be due now that it does not know of
// (a retry asked for, a DSN queued): the scheduler rescans the spool. It
// never blocks.
func (e *Engine) Kick() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Expect leases id, a message the caller is about to commit, so that
// nothing starts or changes it (a scan, an operator's Hold or Remove)
// before Enqueue hands it over: the engine then needs neither to read it
// back nor to wonder whether the copy it is handed is still what is
// stored. Forget gives the lease back when the commit fails.
func (e *Engine) Expect(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, busy := e.leases[id]; !busy {
		e.leases[id] = nil
		e.expected[id] = struct{}{}
	}
}

// Forget gives back the lease Expect took for id, whose commit failed (or
// may have failed: the next scan finds it if it is stored after all), or
// that was committed parked (Commit): no round takes it now.
func (e *Engine) Forget(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.expected[id]; ok {
		delete(e.expected, id)
		delete(e.leases, id)
	}
}

// Enqueue hands the engine a message just committed to the spool, due now,
// as queue.Draft.Committed returns it (body nil when it is in a file), and
// whose lease Expect took before the commit: the scheduler starts it
// without scanning the spool or reading it back, which keeps the cost of
// each accepted message independent of the queue's size. m and body must
// not change afterwards. A message that was not expected (or whose lease
// a stop of Run dropped) is left to a scan: Enqueue kicks. It never
// blocks; when too many are waiting it falls back to Kick too.
func (e *Engine) Enqueue(m *queue.Message, body []byte) {
	e.mu.Lock()
	_, expected := e.expected[m.ID]
	delete(e.expected, m.ID)
	e.mu.Unlock()
	if !expected {
		e.Kick()
		return
	}
	select {
	case e.fresh <- enqueued{m, body}:
	default:
		e.unlease(m.ID)
		e.Kick()
	}
}

// enqueued is a message handed to Enqueue, leased.
type enqueued struct {
	m    *queue.Message
	body []byte // the whole message when spool.db holds it; nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	inFlight := e.rounds + len(e.parking)
	e.mu.Unlock()
	return Stats{
		InFlight:  inFlight,
		Delivered: e.delivered.Load(),
		Deferred:  e.deferred.Load(),
		Failed:    e.failed.Load(),
		DSNs:      e.dsns.Load(),
	}
}

// schedule is the scheduler goroutine's loop.
func (e *Engine) schedule(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var deadline time.Time // when timer fires, on e.now's clock
	arm := func(next time.Time) {
		now := e.now()
		wait := maxSleep
		if !next.IsZero() {
			wait = min(max(next.Sub(now), 0), maxSleep)
		}
		timer.Reset(wait)
		deadline = now.Add(wait)
	}
	rescan := true
	for {
		if !rescan {
			rescan = e.resume(ctx)
		}
		e.mu.Lock()
		soonest := e.soonest
		e.soonest = time.Time{}
		e.mu.Unlock()
		switch {
		case rescan:
			arm(e.nextScan(e.scan(ctx)))
		case !soonest.IsZero() && soonest.Before(deadline):
			arm(soonest) // a round just set an earlier retry than the timer's
		}
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
			rescan = true
		case <-timer.C:
			rescan = true
		case <-e.wake:
			rescan = false
		case f := <-e.fresh:
			e.startFresh(ctx, f)
			rescan = false
		}
	}
}

// nextScan is when the scheduler scans again after a scan that found next
// (zero: nothing due within maxSleep) the first message not yet due. While
// messages wait for capacity, a scan finds only more of them: their
// attempts' ends start them (resume), and scanning again as each new one
// falls due would walk all those waiting every time (a destination that
// is down, with thousands of messages due in turn). So then the next scan
// waits at least busyRescan.
func (e *Engine) nextScan(next time.Time) time.Time {
	if len(e.candidates) == 0 || next.IsZero() {
		return next
	}
	if soonest := e.now().Add(busyRescan); next.Before(soonest) {
		return soonest
	}
	return next
}

// startFresh starts newly queued messages, f and whatever else is waiting
// in e.fresh, or keeps them as candidates until there is capacity.
func (e *Engine) startFresh(ctx context.Context, f enqueued) {
	now := e.now()
	for {
		c := dueCandidate{id: f.m.ID, domains: domainsOf(f.m)}
		e.mu.Lock()
		r, leased := e.leases[c.id]
		lost := !leased || r != nil // a stop of Run dropped the lease Expect took
		blocked := !lost && len(c.domains) > 0 && (e.fullLocked() || !e.capacityLocked(c.domains))
		if blocked {
			delete(e.leases, c.id) // a later start reads it from the spool
		}
		e.mu.Unlock()
		switch {
		case lost:
		case !blocked:
			e.startRound(ctx, now, f.m, f.body)
		case len(e.candidates) < maxCandidates:
			e.candidates = append(e.candidates, c)
		default:
			e.truncated = true // a later scan finds it in the spool
		}
		select {
		case f = <-e.fresh:
		default:
			return
		}
	}
}

// scan starts what waits in leased rounds, then walks the due messages in
// NextAttempt order, starting those it has capacity for and remembering
// the others as candidates. It returns the NextAttempt of the first message
// not yet due (zero if none is due within maxSleep or the walk stopped
// early).
func (e *Engine) scan(ctx context.Context) time.Time {
	now := e.now()
	e.replaceProbes(ctx, now)
	e.mu.Lock()
	e.startWaitingLocked(ctx)
	e.mu.Unlock()

	var next time.Time
	var cands []dueCandidate
	truncated := false
	// Walking the schedule's keys costs no decoding for messages already
	// leased, nor for those the last scan left waiting for capacity
	// (their domains are known): tryStart reads the others once.
	known := make(map[string][]string, len(e.candidates))
	for _, c := range e.candidates {
		known[c.id] = c.domains
	}
	err := e.spool.DueIDs(now.Add(maxSleep), func(id string, at time.Time) bool {
		if ctx.Err() != nil {
			return false
		}
		if at.After(now) {
			next = at
			return false
		}
		c := dueCandidate{id: id, domains: known[id]}
		if e.tryStart(ctx, now, &c) == startBlocked {
			if len(cands) == maxCandidates {
				truncated = true
				return false
			}
			cands = append(cands, c)
		}
		return true
	})
	if err != nil && ctx.Err() == nil {
		e.log.Error("delivery: scanning the queue", "err", err)
	}
	e.candidates, e.truncated = cands, truncated
	return next
}

// resume runs after an attempt ended: it starts what waits in leased
// rounds and the candidates of the last scan that now have capacity. It
// reports whether a new scan is needed (the candidates ran out and the
// last scan had stopped early).
func (e *Engine) resume(ctx context.Context) bool {
	e.mu.Lock()
	e.startWaitingLocked(ctx)
	e.mu.Unlock()
	now := e.now()
	keep := e.candidates[:0]
	for i := range e.candidates {
		if ctx.Err() != nil || e.full() {
			keep = append(keep, e.candidates[i:]...)
			break
		}
		c := e.candidates[i]
		if e.tryStart(ctx, now, &c) == startBlocked {
			keep = append(keep, c)
		}
	}
	clear(e.candidates[len(keep):])
	e.candidates = keep
	return len(keep) == 0 && e.truncated
}

// full reports whether no job can start at all.
func (e *Engine) full() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fullLocked()
}

func (e *Engine) fullLocked() bool {
	return e.active >= e.cfg.MaxConnections || e.rounds >= 2*e.cfg.MaxConnections+16
}

type startResult uint8

const (
	startSkipped startResult = iota // leased already, no longer due, or gone
	startBlocked                    // no capacity now; try again later
	startStarted
)

// tryStart leases candidate c if it is not leased and one of its domains
// has capacity, reads it from the spool, and starts its round. A candidate
// seen for the first time has no domains yet: they are learnt from the
// read, and kept in c so that a blocked candidate is not read again until
// its domains have room.
func (e *Engine) tryStart(ctx context.Context, now time.Time, c *dueCandidate) startResult {
	id := c.id
	e.mu.Lock()
	if _, busy := e.leases[id]; busy {
		e.mu.Unlock()
		return startSkipped
	}
	// A message without undelivered recipients (domains empty) needs no
	// capacity: it is only removed.
	if len(c.domains) > 0 && (e.fullLocked() || !e.capacityLocked(c.domains)) {
		e.mu.Unlock()
		return startBlocked
	}
	e.leases[id] = nil
	e.mu.Unlock()

	m, err := e.spool.Get(id)
	if err != nil || m.Held || m.NextAttempt.After(now) {
		e.unlease(id)
		return startSkipped
	}
	if c.domains == nil {
		c.domains = domainsOf(m)
		e.mu.Lock()
		blocked := len(c.domains) > 0 && (e.fullLocked() || !e.capacityLocked(c.domains))
		if blocked {
			delete(e.leases, id)
		}
		e.mu.Unlock()
		if blocked {
			return startBlocked
		}
	}
	return e.startRound(ctx, now, m, nil)
}

// startRound starts the round of m, which the caller has leased and read
// (or was handed by Enqueue with its body, nil if not kept in memory):
// it sets aside held recipients, removes a message left finished, or
// starts the jobs the limits allow and keeps the rest waiting.
func (e *Engine) startRound(ctx context.Context, now time.Time, m *queue.Message, body []byte) startResult {
	id := m.ID
	groups, held := e.withoutHeld(m, destGroups(m), now)
	if len(groups) == 0 && held {
		e.park(ctx, m, now)
		return startSkipped
	}
	if len(groups) == 0 {
		// Every recipient is final but the message is still here (a crash
		// between the last record and the delete): finish it. Its DSNs were
		// queued before its recipients were recorded.
		if err := e.spool.Delete(context.WithoutCancel(ctx), id); err != nil {
			e.log.Error("delivery: removing a finished message", "id", id, "err", err)
		} else {
			e.log.Info("delivery: removed a finished message", "id", id)
		}
		e.unlease(id)
		return startSkipped
	}
	r := &engineRound{
		id:         id,
		env:        m.Envelope,
		size:       m.Size,
		created:    m.Created,
		msg:        m,
		last:       make(map[int]rcptOutcome),
		pending:    groups,
		unfinished: len(groups),
		body:       body,
		storedHops: m.Hops,
	}
	e.mu.Lock()
	e.leases[id] = r
	e.rounds++
	e.startGroupsLocked(ctx, r)
	if len(r.pending) > 0 {
		e.waiting = append(e.waiting, r)
	}
	e.mu.Unlock()
	return startStarted
}

// capacityLocked reports whether a job for one of domains could start.
func (e *Engine) capacityLocked(domains []string) bool {
	for _, d := range domains {
		if e.perDomain[d] < e.cfg.MaxConnectionsPerDomain {
			return true
		}
	}
	return false
}

// startGroupsLocked starts the pending jobs of r that the limits allow.
func (e *Engine) startGroupsLocked(ctx context.Context, r *engineRound) {
	kept := r.pending[:0]
	for _, g := range r.pending {
		if ctx.Err() != nil || e.active >= e.cfg.MaxConnections || e.perDomain[g.domain] >= e.cfg.MaxConnectionsPerDomain {
			kept = append(kept, g)
			continue
		}
		e.active++
		e.perDomain[g.domain]++
		e.jobs.Add(1)
		e.runners.Go(func() { e.runJob(ctx, r, g) })
	}
	clear(r.pending[len(kept):])
	r.pending = kept
}

// startWaitingLocked starts what the limits now allow of the rounds that
// wait, oldest first.
func (e *Engine) startWaitingLocked(ctx context.Context) {
	kept := e.waiting[:0]
	for _, r := range e.waiting {
		e.startGroupsLocked(ctx, r)
		if len(r.pending) > 0 {
			kept = append(kept, r)
		}
	}
	clear(e.waiting[len(kept):])
	e.waiting = kept
}

// unlease drops the lease of a message that has no round.
func (e *Engine) unlease(id string) {
	e.mu.Lock()
	delete(e.leases, id)
	e.mu.Unlock()
}

// acquire leases id for an admin operation; false if it is in flight.
func (e *Engine) acquire(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, busy := e.leases[id]; busy {
		return false
	}
	e.leases[id] = nil
	return true
}

// acquireSoon is acquire for an operation on one message: a lease that
// is no round in flight (the scheduler reading the record to see whether
// it is due, or another operation) is waited out, for up to a tenth of a
// second, so that an operator's retry is not lost to a scan that happened
// to be looking at the message.
func (e *Engine) acquireSoon(ctx context.Context, id string) bool {
	// By the clock, not by a count of sleeps: a sleep may end up to the
	// process's timer slack late (1 ms in gateway serve).
	until := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(until) {
		e.mu.Lock()
		r, busy := e.leases[id]
		if !busy {
			e.leases[id] = nil
		}
		e.mu.Unlock()
		switch {
		case !busy:
			return true
		case r != nil || ctx.Err() != nil:
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// freeSlot gives back the connection slot of a job whose attempt is over,
// before its outcome is recorded: the spool may hold a deferral or a
// deletion back for a while to share a transaction (queue.Spool.Replace),
// and the next job of the domain need not wait for that.
func (e *Engine) freeSlot(g *destGroup) {
	e.mu.Lock()
	e.active--
	if e.perDomain[g.domain]--; e.perDomain[g.domain] <= 0 {
		delete(e.perDomain, g.domain)
	}
	e.mu.Unlock()
	e.wakeScheduler()
}

// jobEnded is called once a job's outcome is recorded: it gives back the
// message's lease when the job was its round's last (and retries the
// message now if an operator asked to during the round), and notes next
// (zero = none) for the scheduler.
func (e *Engine) jobEnded(ctx context.Context, r *engineRound, last bool, next time.Time) {
	e.mu.Lock()
	e.noteNextLocked(next)
	released, retry := false, false
	if last {
		delete(e.leases, r.id)
		e.rounds--
		released = r.parked && e.releases != r.parkGen
		retry = r.retryAsked
	}
	e.mu.Unlock()
	e.unparkReleased(ctx, r.id, released)
	if retry {
		if err := e.Retry(context.WithoutCancel(ctx), r.id); err != nil && !errors.Is(err, queue.ErrNotFound) {
			e.log.Warn("delivery: an operator's retry asked during an attempt", "id", r.id, "err", err)
		}
	}
	e.wakeScheduler()
}

// noteNextLocked remembers next (zero = none) if it is the soonest next
// attempt set since the scheduler last looked, so that it arms its timer
// for it.
func (e *Engine) noteNextLocked(next time.Time) {
	if !next.IsZero() && (e.soonest.IsZero() || next.Before(e.soonest)) {
		e.soonest = next
	}
}

// wakeScheduler tells the scheduler that capacity was freed or a next
// attempt set (noteNextLocked). It never blocks.
func (e *Engine) wakeScheduler() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// jitter returns d ±10%.
func (e *Engine) jitter(d time.Duration) time.Duration {
	e.mu.Lock()
	f := 0.9 + 0.2*e.rng.Float64()
	e.mu.Unlock()
	return time.Duration(float64(d) * f)
}

// domainsOf is the destination domains of m's undelivered recipients.
func domainsOf(m *queue.Message) []string {
	var doms []string
	for i, rc := range m.Envelope.Recipients {
		if i >= len(m.Recipients) || !undelivered(m.Recipients[i].Status) {
			continue
		}
		d := rc.Address.DomainFold()
		dup := false
		for _, o := range doms {
			dup = dup || o == d
		}
		if !dup {
			doms = append(doms, d)
		}
	}
	return doms
}

// wrapID wraps a spool error for an admin operation on id.
func wrapID(op, id string, err error) error {
	return fmt.Errorf("delivery: %s %s: %w", op, id, err)
}
