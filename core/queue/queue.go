// Package queue owns the durable spool of accepted messages: a bbolt database
// holding each message's envelope, per-recipient delivery state and retry
// schedule, plus the message bodies (small ones in bbolt, large ones as files
// beside it).
//
// The rule it exists for: when Draft.Commit returns nil the message is on
// disk (fsync'd) and survives a crash, so the SMTP server may answer 250.
// Every write goes through one commit loop, a goroutine owned by the Spool,
// which gathers all requests pending at that moment into one bbolt
// transaction, so that concurrent sessions share one fsync (group commit)
// without any added waiting.
//
// On-disk layout under the spool directory:
//
//	spool.db          bbolt; buckets:
//	                    messages  id → JSON record ({"v":1,...})
//	                    bodies    id → header+content, or only the header when
//	                              the content is in bodies/<id>
//	                    schedule  8-byte big-endian NextAttempt (Unix ns) + id → empty,
//	                              one key per message that is not held
//	bodies/<id>       content of messages larger than the spill threshold
//	bodies/<id>.tmp   a draft being received; removed at Open
//	orphans/<id>      a body file no record referred to at Open, kept for
//	                  the operator (never deleted by the spool)
package queue

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors callers branch on. They are returned wrapped; test with errors.Is.
var (
	ErrNotFound = errors.New("queue: message not found")
	ErrClosed   = errors.New("queue: spool closed")
	// ErrDamaged: spool.db is damaged; Open refuses it, Check reports it.
	ErrDamaged = errors.New("queue: spool damaged")
	// ErrEmptySpool: spool.db is new or empty beside existing bodies.
	ErrEmptySpool = errors.New("queue: spool.db lost its records")
)

const (
	defaultSpillThreshold = 256 << 10
	maxBatch              = 512 // requests per bbolt transaction
	dbFile                = "spool.db"
	bodiesDir             = "bodies"
	tmpSuffix             = ".tmp"
	orphansDir            = "orphans"
	listPage              = 256  // records decoded per read transaction in List and Due
	appendFill            = 0.95 // bbolt fill for buckets keyed by ever-growing IDs
	// patience is how long a patient write (Replace, Delete) may wait
	// for a transaction that a commit starts before it starts its own.
	patience = 20 * time.Millisecond
	// maxInMemory bounds the content all open drafts keep in memory
	// together; past it a draft spills to its file at once.
	maxInMemory = 16 << 20
)

var (
	bucketMessages = []byte("messages")
	bucketBodies   = []byte("bodies")
	bucketSchedule = []byte("schedule")
)

// Options configure a Spool. The zero value is ready to use.
type Options struct {
	Log            *slog.Logger     // nil = discard
	SpillThreshold int              // content bytes kept in memory per draft before spilling to a file; <= 0 = 256 KiB
	Now            func() time.Time // nil = time.Now (tests)
	// AcceptEmptySpool lets Open start with a new or empty spool.db
	// even though bodies/ holds message bodies (which it moves to
	// orphans/): the operator's answer to ErrEmptySpool.
	AcceptEmptySpool bool
	// Replica, when set, keeps a copy of every message off this machine:
	// Commit waits for it, Delete removes from it (see Replica).
	Replica Replica

	patience time.Duration // tests: a patient write's wait; 0 = patience
}

// Stats are counters since Open.
type Stats struct {
	Commits int64 // messages committed by Draft.Commit
	Batches int64 // bbolt write transactions, each one fsync
	Spilled int64 // drafts whose content went to a file
	// FileBytes is the size of spool.db now. bbolt maps the whole file,
	// so the pages of it the gateway has read count in its RSS: that is
	// file cache the kernel can drop, not heap (about 5 KB per queued
	// 2 KB message; the file does not shrink when the queue drains, its
	// free pages are reused).
	FileBytes int64
}

// Spool is the durable message queue. Open one per directory; all methods are
// safe for concurrent use.
type Spool struct {
	dir       string
	bodiesDir string
	db        *bolt.DB
	log       *slog.Logger
	now       func() time.Time
	spill     int
	ids       idGen
	patience  time.Duration // the loop's wait for patient writes (see loop)
	replica   Replica       // nil = none

	mu     sync.RWMutex // guards closed and sends on reqs
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the commit loop has returned

	count   atomic.Int64 // records in the messages bucket
	commits atomic.Int64
	batches atomic.Int64
	spilled atomic.Int64
	// inMemory is the content of open drafts held in memory, not yet
	// spilled to files (Draft.hold).
	inMemory atomic.Int64
}

// Open opens (creating if needed, mode 0700) the spool in dir, removes stale
// temporary files, moves body files that no record refers to into
// orphans/, and starts the commit loop. Only one process can hold a spool
// open; a second Open waits a few seconds for the lock and then fails.
//
// Open reads every page of spool.db's tree before bbolt does, and refuses
// a damaged file with an error wrapping ErrDamaged that names the file and
// what is wrong; it changes nothing then. It refuses a new or empty
// spool.db beside existing bodies (ErrEmptySpool) unless
// opt.AcceptEmptySpool.
func Open(dir string, opt Options) (*Spool, error) {
	s := &Spool{
		dir:       dir,
		bodiesDir: filepath.Join(dir, bodiesDir),
		log:       opt.Log,
		now:       opt.Now,
		spill:     opt.SpillThreshold,
		patience:  cmp.Or(opt.patience, patience),
		replica:   opt.Replica,
		reqs:      make(chan *request, maxBatch),
		done:      make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.spill <= 0 {
		s.spill = defaultSpillThreshold
	}
	if err := os.MkdirAll(s.bodiesDir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: open: %w", err)
	}
	path := filepath.Join(dir, dbFile)
	fresh, err := checkBoltFile(path)
	if err != nil {
		return nil, fmt.Errorf("queue: open: %w", err)
	}
	files, stale, err := s.bodyFiles()
	if err != nil {
		return nil, err
	}
	if fresh && len(files) > 0 && !opt.AcceptEmptySpool {
		return nil, fmt.Errorf("queue: open: %w: %s is new or empty, but %s holds %d message bodies whose records it had; "+
			"restore it, or salvage what is left, or accept an empty spool (the bodies are then moved to %s)",
			ErrEmptySpool, path, s.bodiesDir, len(files), filepath.Join(dir, orphansDir))
	}
	if err := s.openDB(path); err != nil {
		return nil, err
	}
	for _, name := range stale {
		s.removeStale(name)
	}
	if err := s.init(files); err != nil {
		s.db.Close()
		return nil, err
	}
	go s.loop()
	return s, nil
}

// openDB opens spool.db, which checkBoltFile has read, with bbolt. A panic
// or a memory fault in bbolt (damage the check missed) becomes an error
// wrapping ErrDamaged instead of a crash, as far as it happens on this
// goroutine: bbolt's scan of the pages at Open runs on one of its own,
// which is why the file is checked first.
func (s *Spool) openDB(path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("queue: open: %w", &DamageError{Path: path, Problems: []string{fmt.Sprintf("bbolt: %v", p)}})
		}
	}()
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return fmt.Errorf("queue: open %s: %w", s.dir, err)
	}
	s.db = db
	return nil
}

// boltOptions are the options spool.db is opened with.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:      5 * time.Second,
		FreelistType: bolt.FreelistMapType,
		// The freelist is rebuilt by scanning at Open instead of being
		// written on every commit: less to fsync per batch.
		NoFreelistSync: true,
		// Map address space for a large spool up front so that growing
		// the file does not remap, which waits for every reader.
		InitialMmapSize: 1 << 30,
	}
}

// bodyFiles lists the body files in bodies/ by ID, and the stale drafts.
func (s *Spool) bodyFiles() (files map[string]bool, stale []string, err error) {
	entries, err := os.ReadDir(s.bodiesDir)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: open: %w", err)
	}
	files = make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpSuffix) && validID(strings.TrimSuffix(name, tmpSuffix)):
			stale = append(stale, name)
		case validID(name):
			files[name] = true
		}
	}
	return files, stale, nil
}

// init creates the buckets, checks that every spilled record has its body
// file, moves the files no record refers to (files) into orphans/, and
// seeds the counters and the ID generator. It runs before the commit loop
// starts.
func (s *Spool) init(files map[string]bool) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMessages, bucketBodies, bucketSchedule} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: open: create buckets: %w", err)
	}

	var n int64
	var last string
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMessages).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n++
			last = string(k)
			var r struct {
				Body string `json:"body"`
			}
			if err := json.Unmarshal(v, &r); err != nil {
				s.log.Error("queue: unreadable record", "id", string(k), "err", err)
				continue
			}
			if r.Body != bodyFile {
				continue
			}
			if files[string(k)] {
				delete(files, string(k))
			} else {
				s.log.Error("queue: body file missing; record kept", "id", string(k),
					"path", filepath.Join(s.bodiesDir, string(k)))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: open: scan: %w", err)
	}
	s.moveOrphans(files)
	s.count.Store(n)
	s.ids.seed(last)
	return nil
}

// moveOrphans moves the body files named in files, which no record refers
// to, into orphans/ and logs each at WARN. A crash between a body's rename
// and its record's commit (the client got no 250), or between a record's
// removal and its file's, leaves one; so does a spool.db that lost its
// records, which is why they are kept for an operator to look at.
func (s *Spool) moveOrphans(files map[string]bool) {
	if len(files) == 0 {
		return
	}
	dst := filepath.Join(s.dir, orphansDir)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		s.log.Error("queue: cannot make the orphans folder; orphan bodies left in place", "dir", dst, "err", err)
		return
	}
	for name := range files {
		from, to := filepath.Join(s.bodiesDir, name), filepath.Join(dst, name)
		if err := os.Rename(from, to); err != nil {
			s.log.Error("queue: cannot move orphan body; left in place", "file", from, "err", err)
			continue
		}
		s.log.Warn("queue: body with no record moved to orphans", "file", to)
	}
	if err := syncDir(dst); err != nil {
		s.log.Warn("queue: sync orphans folder", "dir", dst, "err", err)
	}
}

// removeStale removes name, a draft's body file that was never committed:
// its client got no 250.
func (s *Spool) removeStale(name string) {
	err := os.Remove(filepath.Join(s.bodiesDir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("queue: cannot remove stale draft", "file", name, "err", err)
		return
	}
	s.log.Info("queue: removed stale draft", "file", name)
}

// Close stops accepting writes, lets the commit loop finish every request
// already handed to it, and closes the database. Every later call returns
// an error wrapping ErrClosed (Abort of a Draft still works). Close is
// idempotent.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.reqs)
	s.mu.Unlock()
	<-s.done
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	return nil
}

// Stats returns the counters since Open.
func (s *Spool) Stats() Stats {
	st := Stats{
		Commits: s.commits.Load(),
		Batches: s.batches.Load(),
		Spilled: s.spilled.Load(),
	}
	if fi, err := os.Stat(s.db.Path()); err == nil {
		st.FileBytes = fi.Size()
	}
	return st
}

// Len returns the number of messages in the spool.
func (s *Spool) Len() int { return int(s.count.Load()) }

// ---- the commit loop ----

// request is one write for the commit loop. apply runs inside the shared
// transaction; it must do its reads and checks before its first write and
// return an error wrapped in writeError if a write fails, so that the loop
// knows the transaction holds a partial write and must be redone without it.
type request struct {
	apply   func(tx *bolt.Tx) error
	commits int64 // messages this request adds to Stats.Commits
	delta   int64 // change in the number of records
	name    string
	// patient: the request may wait up to patience for a transaction
	// another request starts (see loop). Its caller still waits until
	// it is durable.
	patient bool

	err       error
	uncertain bool          // err came from committing the transaction: it may be on disk
	done      chan struct{} // closed when err is final
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// errRedo makes db.Update roll back so that the batch can run again without
// a request that failed half-way.
var errRedo = errors.New("queue: redo batch")

// submit hands r to the commit loop and waits for its outcome. ctx is
// honoured only until the loop has r: after that the request may already be
// part of a transaction being written, and returning early would leave the
// caller unsure whether the write is durable (for a Commit: the client would
// be told to retry a message we may deliver, and a spilled body could be
// removed under a record that did get committed). The wait is bounded by one
// batch write.
func (s *Spool) submit(ctx context.Context, r *request) error {
	r.done = make(chan struct{})
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return fmt.Errorf("queue: %s: %w", r.name, ErrClosed)
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("queue: %s: %w", r.name, ctx.Err())
	}
	s.mu.RUnlock()
	<-r.done
	return r.err
}

// loop is the commit loop. It blocks for one request, takes whatever else is
// already queued (up to maxBatch) without waiting, writes them in one
// transaction and answers each. Requests that arrive meanwhile form the next
// batch. Patient requests alone do not start a transaction: they wait for
// the next request that is not patient, for maxBatch of them, or for
// patience, whichever comes first, so that the engine's deferrals and
// deletions ride on the fsyncs of accepted mail instead of paying their own.
// It returns when reqs is closed and drained.
func (s *Spool) loop() {
	defer close(s.done)
	batch := make([]*request, 0, maxBatch)
	var patient <-chan time.Time // while batch holds patient requests only
	for {
		r, ok := (*request)(nil), true
		select {
		case r, ok = <-s.reqs:
		case <-patient:
		}
		if r != nil {
			batch = s.fill(append(batch, r))
		}
		if ok && r != nil && len(batch) < maxBatch && allPatient(batch) {
			if patient == nil {
				patient = time.After(s.patience)
			}
			continue
		}
		patient = nil
		if len(batch) > 0 {
			s.write(batch)
			clear(batch)
			batch = batch[:0]
		}
		if !ok {
			return
		}
	}
}

// fill adds to batch whatever is already queued, up to maxBatch, without
// waiting.
func (s *Spool) fill(batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r, ok := <-s.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// allPatient reports whether every request of batch is patient.
func allPatient(batch []*request) bool {
	for _, r := range batch {
		if !r.patient {
			return false
		}
	}
	return true
}

// write applies batch in one transaction and answers every request. A panic
// fails the requests of this batch and leaves the loop running.
func (s *Spool) write(batch []*request) {
	answered := false
	defer func() {
		p := recover()
		if p == nil || answered {
			return
		}
		s.log.Error("queue: panic in commit loop", "panic", p, "stack", string(debug.Stack()))
		for _, r := range batch {
			if r.err == nil {
				r.err = fmt.Errorf("queue: %s: internal error: %v", r.name, p)
			}
			close(r.done)
		}
	}()

	var err error
	for {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for _, r := range batch {
				if r.err != nil {
					continue // failed on an earlier pass
				}
				if err := r.apply(tx); err != nil {
					r.err = err
					if _, ok := errors.AsType[*writeError](err); ok {
						return errRedo
					}
				}
			}
			return nil
		})
		if !errors.Is(err, errRedo) {
			break
		}
	}
	var commits, delta int64
	if err == nil {
		s.batches.Add(1)
	}
	for _, r := range batch {
		switch {
		case r.err != nil:
		case err != nil:
			r.err, r.uncertain = fmt.Errorf("queue: %s: %w", r.name, err), true
		default:
			commits += r.commits
			delta += r.delta
		}
	}
	s.commits.Add(commits)
	s.count.Add(delta)
	answered = true
	for _, r := range batch {
		close(r.done)
	}
}

// ---- writes other than Commit ----

// Update reads the message id, calls fn on it and stores the result, all in
// one transaction of the commit loop: when Update returns nil the change is
// durable. If fn returns an error nothing is stored and Update returns it.
//
// fn runs on the commit loop and holds up every other write while it runs:
// it must be quick and must not call the Spool. In the rare case that another
// request in the same batch fails half-way, the batch is redone and fn is
// called again on a fresh copy, so fn should only change the Message.
//
// ID, Version, Size and Created cannot be changed; Recipients must stay
// aligned with Envelope.Recipients. Changing NextAttempt or Held moves the
// message in the schedule. A recipient made final goes to the replica, if
// there is one (Replica.Update), once the change is durable.
func (s *Spool) Update(ctx context.Context, id string, fn func(*Message) error) error {
	if !validID(id) {
		return fmt.Errorf("queue: update %s: %w", id, ErrNotFound)
	}
	key := []byte(id)
	var stored, changed *Message // for the replica, from the pass that was committed
	var rec []byte
	err := s.submit(ctx, &request{
		name: "update " + id,
		apply: func(tx *bolt.Tx) (err error) {
			msgs := tx.Bucket(bucketMessages)
			v := msgs.Get(key)
			if v == nil {
				return fmt.Errorf("queue: update %s: %w", id, ErrNotFound)
			}
			old, err := decodeMessage(v)
			if err != nil {
				return fmt.Errorf("queue: update %s: %w", id, err)
			}
			if old.Version > recordVersion {
				return fmt.Errorf("queue: update %s: record version %d is newer than %d", id, old.Version, recordVersion)
			}
			m, err := decodeMessage(v) // the copy fn may change
			if err != nil {
				return fmt.Errorf("queue: update %s: %w", id, err)
			}
			if err := callUpdate(fn, m); err != nil {
				return fmt.Errorf("queue: update %s: %w", id, err)
			}
			if len(m.Recipients) != len(m.Envelope.Recipients) {
				return fmt.Errorf("queue: update %s: %d recipient states for %d recipients",
					id, len(m.Recipients), len(m.Envelope.Recipients))
			}
			m.ID, m.Version, m.Size, m.Created, m.spilled = old.ID, recordVersion, old.Size, old.Created, old.spilled
			b, err := encodeMessage(m)
			if err != nil {
				return err
			}
			stored, changed, rec = old, m, b
			return putRecord(tx, key, scheduleKey(old), scheduleKey(m), b)
		},
	})
	if err != nil {
		return err
	}
	s.updateReplica(stored, changed, rec)
	return nil
}

// Reschedule makes each message of ids that is not held and not due by
// at due at at, in one transaction, and reports how many it changed: the
// delivery engine's "retry now" for many messages at once (an operator's
// retry of a domain, a destination reached again), which one Update each
// made a commit each. IDs that are gone, or whose records do not decode,
// are passed over.
func (s *Spool) Reschedule(ctx context.Context, ids []string, at time.Time) (int, error) {
	var n int
	err := s.submit(ctx, &request{
		name: fmt.Sprintf("reschedule %d", len(ids)),
		apply: func(tx *bolt.Tx) error {
			n = 0 // the batch may be redone
			msgs := tx.Bucket(bucketMessages)
			for _, id := range ids {
				v := msgs.Get([]byte(id))
				if v == nil {
					continue
				}
				m, err := decodeMessage(v)
				if err != nil || m.Version > recordVersion || m.Held || !m.NextAttempt.After(at) {
					continue
				}
				old := scheduleKey(m)
				m.NextAttempt = at
				b, err := encodeMessage(m)
				if err != nil {
					continue
				}
				if err := putRecord(tx, []byte(id), old, scheduleKey(m), b); err != nil {
					return err
				}
				n++
			}
			return nil
		},
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Replace stores m in place of the record of the same ID, whose stored
// form the caller holds as old: a write for a caller that owns the message
// (the delivery engine holds a lease on it), so that the commit loop only
// writes. Unlike Update it decodes nothing inside the loop and encodes m
// before it; the record must exist, and old must be what is stored (its
// NextAttempt and Held name the schedule entry to move). ID, Version,
// Size and Created are taken from old; Recipients must stay aligned with
// Envelope.Recipients.
//
// Replace is patient: it is durable when it returns, but it may wait up
// to 20 ms for a transaction that a commit starts (see loop), so that a
// deferral costs no fsync of its own. Like Update, it sends a recipient
// made final to the replica.
func (s *Spool) Replace(ctx context.Context, old, m *Message) error {
	id := old.ID
	if !validID(id) {
		return fmt.Errorf("queue: replace %s: %w", id, ErrNotFound)
	}
	if len(m.Recipients) != len(m.Envelope.Recipients) {
		return fmt.Errorf("queue: replace %s: %d recipient states for %d recipients",
			id, len(m.Recipients), len(m.Envelope.Recipients))
	}
	c := *m
	c.ID, c.Version, c.Size, c.Created, c.spilled = old.ID, recordVersion, old.Size, old.Created, old.spilled
	b, err := encodeMessage(&c)
	if err != nil {
		return err
	}
	key, oldKey, newKey := []byte(id), scheduleKey(old), scheduleKey(&c)
	err = s.submit(ctx, &request{
		name:    "replace " + id,
		patient: true,
		apply: func(tx *bolt.Tx) error {
			if tx.Bucket(bucketMessages).Get(key) == nil {
				return fmt.Errorf("queue: replace %s: %w", id, ErrNotFound)
			}
			return putRecord(tx, key, oldKey, newKey, b)
		},
	})
	if err != nil {
		return err
	}
	s.updateReplica(old, &c, b)
	return nil
}

// putRecord writes record b under key and moves its schedule entry from
// oldKey to newKey (nil: none, a held message).
func putRecord(tx *bolt.Tx, key, oldKey, newKey, b []byte) error {
	sched := tx.Bucket(bucketSchedule)
	if oldKey != nil && !bytes.Equal(oldKey, newKey) {
		if err := sched.Delete(oldKey); err != nil {
			return &writeError{fmt.Errorf("queue: write %s: %w", key, err)}
		}
	}
	if newKey != nil {
		if err := sched.Put(newKey, nil); err != nil {
			return &writeError{fmt.Errorf("queue: write %s: %w", key, err)}
		}
	}
	if err := tx.Bucket(bucketMessages).Put(key, b); err != nil {
		return &writeError{fmt.Errorf("queue: write %s: %w", key, err)}
	}
	return nil
}

func callUpdate(fn func(*Message) error, m *Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in update function: %v", p)
		}
	}()
	return fn(m)
}

// Delete removes the message id: its record, schedule entry and body (the
// body file too, once the removal of the record is durable). Like Replace
// it is patient: durable when it returns, after up to 20 ms spent waiting
// for a transaction to share.
func (s *Spool) Delete(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("queue: delete %s: %w", id, ErrNotFound)
	}
	key := []byte(id)
	var spilled bool
	err := s.submit(ctx, &request{
		name:    "delete " + id,
		delta:   -1,
		patient: true,
		apply: func(tx *bolt.Tx) error {
			msgs := tx.Bucket(bucketMessages)
			v := msgs.Get(key)
			if v == nil {
				return fmt.Errorf("queue: delete %s: %w", id, ErrNotFound)
			}
			m, err := decodeMeta(v)
			if err != nil {
				return fmt.Errorf("queue: delete %s: %w", id, err)
			}
			spilled = m.spilled
			if k := scheduleKey(m); k != nil {
				if err := tx.Bucket(bucketSchedule).Delete(k); err != nil {
					return &writeError{fmt.Errorf("queue: delete %s: %w", id, err)}
				}
			}
			if err := tx.Bucket(bucketBodies).Delete(key); err != nil {
				return &writeError{fmt.Errorf("queue: delete %s: %w", id, err)}
			}
			if err := msgs.Delete(key); err != nil {
				return &writeError{fmt.Errorf("queue: delete %s: %w", id, err)}
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if s.replica != nil {
		s.replica.Remove(id)
	}
	if !spilled {
		return nil
	}
	// A crash before this leaves an orphan file, which the next Open removes.
	if err := os.Remove(filepath.Join(s.bodiesDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("queue: cannot remove body file", "id", id, "err", err)
	}
	return nil
}

// scheduleKey returns m's key in the schedule bucket, or nil if m is held
// (held messages are not scheduled).
func scheduleKey(m *Message) []byte {
	if m.Held {
		return nil
	}
	k := make([]byte, 8+len(m.ID))
	binary.BigEndian.PutUint64(k, scheduleTime(m.NextAttempt))
	copy(k[8:], m.ID)
	return k
}

// scheduleTime maps t to Unix nanoseconds for the schedule key: the zero time
// and times before 1970 are 0 (due now).
func scheduleTime(t time.Time) uint64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

// ---- reads ----

// Reads use their own read-only transactions, concurrently with the commit
// loop, and never call back into caller code while one is open: a long read
// transaction would stop bbolt from growing its file and stall every commit.

func (s *Spool) view(fn func(tx *bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Get returns the message id, or an error wrapping ErrNotFound.
func (s *Spool) Get(id string) (*Message, error) {
	if !validID(id) {
		return nil, fmt.Errorf("queue: get %s: %w", id, ErrNotFound)
	}
	var m *Message
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMessages).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		m, err = decodeMessage(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("queue: get %s: %w", id, err)
	}
	return m, nil
}

// Body returns the header and content of message id exactly as committed.
// Large bodies are streamed from their file; the caller must Close the
// reader.
func (s *Spool) Body(id string) (io.ReadCloser, error) {
	if !validID(id) {
		return nil, fmt.Errorf("queue: body %s: %w", id, ErrNotFound)
	}
	var stored []byte
	var spilled bool
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMessages).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		m, err := decodeMeta(v)
		if err != nil {
			return err
		}
		spilled = m.spilled
		// bbolt's memory is valid only inside the transaction: copy.
		stored = bytes.Clone(tx.Bucket(bucketBodies).Get([]byte(id)))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: body %s: %w", id, err)
	}
	if !spilled {
		return io.NopCloser(bytes.NewReader(stored)), nil
	}
	f, err := os.Open(filepath.Join(s.bodiesDir, id))
	if err != nil {
		if _, gerr := s.Get(id); errors.Is(gerr, ErrNotFound) {
			err = ErrNotFound // deleted since the record was read
		}
		return nil, fmt.Errorf("queue: body %s: %w", id, err)
	}
	return &bodyReader{Reader: io.MultiReader(bytes.NewReader(stored), f), f: f}, nil
}

type bodyReader struct {
	io.Reader
	f *os.File
}

func (b *bodyReader) Close() error { return b.f.Close() }

// List calls fn for each message in ID (arrival) order until fn returns
// false. fn may call the Spool, including Update and Delete; messages
// committed or deleted during the walk may or may not be seen.
func (s *Spool) List(fn func(*Message) bool) error {
	err := walk(s, bucketMessages, func(_ *bolt.Tx, k, v []byte) (*Message, bool, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", k, err)
		}
		return m, true, nil
	}, fn)
	if err != nil {
		return fmt.Errorf("queue: list: %w", err)
	}
	return nil
}

// DueIDs calls fn, in NextAttempt order (ties in ID order), with the ID and
// NextAttempt of each message that is not held and whose NextAttempt is at
// or before now, until fn returns false. It reads only the schedule's keys,
// so a scheduler can walk a large backlog without decoding records it will
// skip. fn may call the Spool.
func (s *Spool) DueIDs(now time.Time, fn func(id string, next time.Time) bool) error {
	limit := scheduleTime(now)
	type due struct {
		id   string
		next time.Time
	}
	err := walk(s, bucketSchedule, func(_ *bolt.Tx, k, _ []byte) (due, bool, error) {
		if len(k) < 8 {
			return due{}, false, nil // not a schedule key: cannot happen
		}
		at := binary.BigEndian.Uint64(k)
		if at > limit {
			return due{}, false, errStopWalk
		}
		d := due{id: string(k[8:])}
		if at > 0 {
			d.next = time.Unix(0, int64(at))
		}
		return d, true, nil
	}, func(d due) bool { return fn(d.id, d.next) })
	if err != nil {
		return fmt.Errorf("queue: due: %w", err)
	}
	return nil
}

// Due calls fn, in NextAttempt order (ties in ID order), for each message
// that is not held and whose NextAttempt is at or before now, until fn
// returns false. fn may call the Spool.
func (s *Spool) Due(now time.Time, fn func(*Message) bool) error {
	limit := scheduleTime(now)
	err := walk(s, bucketSchedule, func(tx *bolt.Tx, k, _ []byte) (*Message, bool, error) {
		if len(k) < 8 {
			return nil, false, nil // not a schedule key: cannot happen
		}
		if binary.BigEndian.Uint64(k) > limit {
			return nil, false, errStopWalk
		}
		v := tx.Bucket(bucketMessages).Get(k[8:])
		if v == nil {
			return nil, false, nil // cannot happen: Commit, Update and Delete keep both in step
		}
		m, err := decodeMessage(v)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", k[8:], err)
		}
		return m, !m.Held, nil
	}, fn)
	if err != nil {
		return fmt.Errorf("queue: due: %w", err)
	}
	return nil
}

// errStopWalk ends a walk early from its read function; walk returns nil.
var errStopWalk = errors.New("queue: stop walk")

// walk reads bucket in key order, listPage entries per read transaction,
// turning each into an item with read (keep false skips it; errStopWalk
// ends the walk), and calls fn with the items of a page after its
// transaction has ended, until fn returns false. fn may call the Spool: no
// transaction is open while it runs.
func walk[T any](s *Spool, bucket []byte, read func(tx *bolt.Tx, k, v []byte) (T, bool, error), fn func(T) bool) error {
	var from []byte
	for {
		var page []T
		var resume []byte
		stopped := false
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			k, v := c.First()
			if from != nil {
				k, v = c.Seek(from)
			}
			for ; k != nil; k, v = c.Next() {
				if len(page) == listPage {
					resume = bytes.Clone(k)
					return nil
				}
				item, keep, err := read(tx, k, v)
				if errors.Is(err, errStopWalk) {
					stopped = true
					return nil
				}
				if err != nil {
					return err
				}
				if keep {
					page = append(page, item)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, item := range page {
			if !fn(item) {
				return nil
			}
		}
		if resume == nil || stopped {
			return nil
		}
		from = resume
	}
}
