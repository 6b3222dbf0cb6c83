package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/mailgate/gateway/core/envelope"
)

// spillBufferSize is the write buffer of a draft's body file. The SMTP
// session copies content in chunks of up to 32 KiB, which pass it by, so
// it only gathers smaller ones; a thousand sessions receiving large
// messages hold one each.
const spillBufferSize = 16 << 10

type draftState uint8

const (
	draftOpen draftState = iota
	draftCommitted
	draftFailed // Commit returned an error; only Abort is left
	draftAborted
)

// Draft is one message being received. Its content is kept in memory up to
// the spill threshold and beyond that streamed to bodies/<id>.tmp. A Draft
// is used by one goroutine at a time.
type Draft struct {
	s  *Spool
	id string

	state draftState
	err   error // sticky write error
	size  int64 // content bytes written

	buf  []byte // headroom, then the content while not spilled (content)
	held int    // bytes of content counted in Spool.inMemory
	file *os.File
	w    *bufio.Writer
	path string // the body file, once one exists (the .tmp name, then the final one)
	// stored and storedBody are the message and body Commit stored
	// (Committed); storedBody is nil when the body is in a file.
	stored     *Message
	storedBody []byte
	keep       bool // the body file may be referred to by a committed record: never remove it
	// parkUntil and parkReplies, set by Park, are the first attempt and
	// the recipients' last replies that Commit stores; zero: due at once.
	parkUntil   time.Time
	parkReplies []string
}

// Create starts a new message with a fresh ID. Nothing touches the disk until
// the content passes the spill threshold.
func (s *Spool) Create(ctx context.Context) (*Draft, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("queue: create: %w", err)
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("queue: create: %w", ErrClosed)
	}
	return &Draft{s: s, id: s.ids.next(s.now())}, nil
}

// ID returns the queue ID of the message.
func (d *Draft) ID() string { return d.id }

// Write appends p to the content.
func (d *Draft) Write(p []byte) (int, error) {
	if d.state != draftOpen {
		return 0, fmt.Errorf("queue: write %s: draft is no longer open", d.id)
	}
	if d.err != nil {
		return 0, d.err
	}
	if d.w == nil && (len(d.content())+len(p) > d.s.spill || !d.hold(len(p))) {
		if err := d.spillToFile(); err != nil {
			d.err = err
			return 0, err
		}
	}
	if d.w == nil {
		if d.buf == nil {
			d.buf = make([]byte, headroom, headroom+len(p))
		}
		d.buf = append(d.buf, p...)
		d.size += int64(len(p))
		return len(p), nil
	}
	n, err := d.w.Write(p)
	d.size += int64(n)
	if err != nil {
		d.err = fmt.Errorf("queue: write %s: %w", d.id, err)
		return n, d.err
	}
	return n, nil
}

// Open returns the content written so far (not the header that Commit
// will prepend), for reading it back before the commit: from memory, or
// from the body file after flushing it. The reader is an io.Seeker too. It
// reads what was written before Open; the draft must stay open (no Commit
// or Abort) while it is read.
func (d *Draft) Open() (io.ReadCloser, error) {
	if d.state != draftOpen {
		return nil, fmt.Errorf("queue: open %s: draft is no longer open", d.id)
	}
	if d.err != nil {
		return nil, d.err
	}
	if d.w == nil {
		return memReader{bytes.NewReader(d.content())}, nil
	}
	if err := d.w.Flush(); err != nil {
		d.err = fmt.Errorf("queue: write %s: %w", d.id, err)
		return nil, d.err
	}
	f, err := os.Open(d.path)
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", d.id, err)
	}
	return fileReader{io.NewSectionReader(f, 0, d.size), f}, nil
}

// memReader and fileReader are what Open returns: readers and seekers
// that can be closed.
type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

type fileReader struct {
	*io.SectionReader
	f *os.File
}

func (r fileReader) Close() error { return r.f.Close() }

func (d *Draft) spillToFile() error {
	path := filepath.Join(d.s.bodiesDir, d.id+tmpSuffix)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("queue: spill %s: %w", d.id, err)
	}
	d.file, d.path = f, path
	d.w = bufio.NewWriterSize(f, spillBufferSize)
	d.s.spilled.Add(1)
	if _, err := d.w.Write(d.content()); err != nil {
		return fmt.Errorf("queue: spill %s: %w", d.id, err)
	}
	d.dropBuffer()
	return nil
}

// headroom is the space a draft keeps in memory before its content for
// the header Commit puts in front of it (trace and authentication
// fields): the body stored is then the draft's buffer, not a copy. It is
// not counted in maxInMemory (a thousand drafts hold 1 MiB of it).
const headroom = 1 << 10

// content is what was written to d in memory (nil once spilled).
func (d *Draft) content() []byte {
	if d.buf == nil {
		return nil
	}
	return d.buf[headroom:]
}

// withHeader returns header followed by the content in memory: in the
// buffer's headroom when the header fits, else in a new slice.
func (d *Draft) withHeader(header []byte) []byte {
	if d.buf != nil && len(header) <= headroom {
		body := d.buf[headroom-len(header):]
		copy(body, header)
		return body
	}
	c := d.content()
	return append(append(make([]byte, 0, len(header)+len(c)), header...), c...)
}

// hold counts n more bytes of content in memory against the spool's
// maxInMemory, or reports false (the draft must spill) when that would
// pass it: a thousand sessions of large messages then hold at most
// maxInMemory of content in memory between them, not the spill threshold
// each.
func (d *Draft) hold(n int) bool {
	if d.s.inMemory.Add(int64(n)) > maxInMemory {
		d.s.inMemory.Add(-int64(n))
		return false
	}
	d.held += n
	return true
}

// dropBuffer lets go of the content in memory and of its count.
func (d *Draft) dropBuffer() {
	d.buf = nil
	d.s.inMemory.Add(-int64(d.held))
	d.held = 0
}

// Commit stores env, header and the content durably. header is prepended to
// the content: Body returns header+content. When Commit returns nil the
// message is fsync'd; on error nothing is queued (or, if the database
// failed while writing, the outcome is unknown and the next Open sorts it
// out) and the draft can only be aborted.
//
// ctx is honoured only until the message is handed to the commit loop.
// After that Commit waits for the outcome, at most one batch write: the
// message may already be in a transaction being written, and returning early
// would leave the caller unsure whether it is queued (the client would be
// told to retry a message that may be delivered anyway).
func (d *Draft) Commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	if d.state != draftOpen {
		return fmt.Errorf("queue: commit %s: draft is no longer open", d.id)
	}
	err := d.commit(ctx, env, header)
	if err != nil {
		d.state = draftFailed
		return err
	}
	d.state = draftCommitted
	return nil
}

func (d *Draft) commit(ctx context.Context, env *envelope.Envelope, header []byte) error {
	if d.err != nil {
		return d.err
	}
	if env == nil || len(env.Recipients) == 0 {
		return fmt.Errorf("queue: commit %s: no recipients", d.id)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("queue: commit %s: %w", d.id, err)
	}
	s := d.s
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return fmt.Errorf("queue: commit %s: %w", d.id, ErrClosed)
	}

	return d.commitMessage(ctx, d.newMessage(env, header), header)
}

// commitMessage stores m, whose body is header and the draft's content,
// and its copy on the replica, as Commit does.
func (d *Draft) commitMessage(ctx context.Context, m *Message, header []byte) error {
	s := d.s
	rec, err := encodeMessage(m)
	if err != nil {
		return err
	}
	var body []byte
	if m.spilled {
		if err := d.finishFile(); err != nil {
			return err
		}
		body = header
	} else {
		body = d.withHeader(header)
	}
	// The copy first: a message whose copy fails was never queued here,
	// so nothing is to be undone (a spool closing meanwhile cannot keep
	// it). A copy whose local commit then fails is removed again.
	if err := d.replicate(ctx, m, rec, body); err != nil {
		return err
	}
	r := d.commitRequest(m, rec, body)
	err = s.submit(ctx, r)
	if r.uncertain {
		d.keep = true
	}
	if err != nil {
		if s.replica != nil && !r.uncertain {
			s.replica.Remove(d.id)
		}
		return err
	}
	d.dropBuffer()
	d.stored = m
	if !m.spilled {
		d.storedBody = body
	}
	return nil
}

// Committed returns the message as a successful Commit stored it, and its
// body (header and content) when spool.db holds it, nil when a file does:
// what Get and Body would read back, without reading it back. Both are
// the caller's to keep and must not be changed. Before a successful
// Commit it returns nil, nil.
func (d *Draft) Committed() (*Message, []byte) {
	if d.state != draftCommitted {
		return nil, nil
	}
	return d.stored, d.storedBody
}

// Park makes the message that Commit stores wait until at for its first
// attempt, the last reply of recipient i being replies[i] (none past the
// end): the delivery engine parks new mail for a destination it knows is
// down this way, for the cost of the commit alone
// (delivery/engine_park.go). The recipients stay pending and not
// attempted.
func (d *Draft) Park(at time.Time, replies []string) {
	d.parkUntil, d.parkReplies = at.Round(0), replies
}

// newMessage is the message Commit stores, as it will read back: its own
// copy of env (Committed hands it on; the session reuses env) with text
// that is not UTF-8 as the record stores it (see storedText).
func (d *Draft) newMessage(env *envelope.Envelope, header []byte) *Message {
	m := &Message{
		Version:    recordVersion,
		ID:         d.id,
		Envelope:   *env,
		Recipients: make([]RecipientState, len(env.Recipients)),
		Created:    d.s.now().Round(0), // as stored: no monotonic reading
		Size:       int64(len(header)) + d.size,
		spilled:    d.w != nil,
	}
	if !d.parkUntil.IsZero() {
		m.NextAttempt = d.parkUntil
		for i := range min(len(m.Recipients), len(d.parkReplies)) {
			m.Recipients[i].LastReply = storedText(d.parkReplies[i])
		}
	}
	e := &m.Envelope
	e.Recipients = slices.Clone(env.Recipients)
	for _, p := range []*string{&e.Sender.Local, &e.Sender.Domain, (*string)(&e.Body), (*string)(&e.Ret),
		&e.EnvID, &e.Auth, &e.ClientIP, &e.ClientHELO, &e.AuthUser} {
		*p = storedText(*p)
	}
	for i := range e.Recipients {
		rc := &e.Recipients[i]
		rc.Address.Local, rc.Address.Domain, rc.ORCPT = storedText(rc.Address.Local), storedText(rc.Address.Domain), storedText(rc.ORCPT)
	}
	return m
}

// commitRequest is the commit loop's request that stores m's record rec
// and body (the whole message, or only the header when spilled).
func (d *Draft) commitRequest(m *Message, rec, body []byte) *request {
	key := []byte(d.id)
	sched := scheduleKey(m)
	return &request{
		name:    "commit " + d.id,
		commits: 1,
		delta:   1,
		apply: func(tx *bolt.Tx) error {
			msgs, bodies := tx.Bucket(bucketMessages), tx.Bucket(bucketBodies)
			if msgs.Get(key) != nil {
				return fmt.Errorf("queue: commit %s: duplicate id", d.id)
			}
			// IDs only grow, so these buckets are appended to: full pages
			// mean fewer pages to write and fsync per batch.
			msgs.FillPercent, bodies.FillPercent = appendFill, appendFill
			if err := bodies.Put(key, body); err != nil {
				return &writeError{fmt.Errorf("queue: commit %s: %w", d.id, err)}
			}
			if sched != nil { // nil: held (an import), not scheduled
				if err := tx.Bucket(bucketSchedule).Put(sched, nil); err != nil {
					return &writeError{fmt.Errorf("queue: commit %s: %w", d.id, err)}
				}
			}
			if err := msgs.Put(key, rec); err != nil {
				return &writeError{fmt.Errorf("queue: commit %s: %w", d.id, err)}
			}
			return nil
		},
	}
}

// finishFile makes the spilled content durable under its final name: flush,
// fsync, rename from .tmp, fsync the directory. A crash after this and
// before the record is committed leaves an orphan that Open removes.
func (d *Draft) finishFile() error {
	err := d.w.Flush()
	if err == nil {
		err = d.file.Sync()
	}
	if cerr := d.file.Close(); err == nil {
		err = cerr
	}
	d.file, d.w = nil, nil
	if err != nil {
		return fmt.Errorf("queue: commit %s: %w", d.id, err)
	}
	final := filepath.Join(d.s.bodiesDir, d.id)
	if err := os.Rename(d.path, final); err != nil {
		return fmt.Errorf("queue: commit %s: %w", d.id, err)
	}
	d.path = final
	if err := syncDir(d.s.bodiesDir); err != nil {
		return fmt.Errorf("queue: commit %s: %w", d.id, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Abort discards the draft and its body file. It is safe after a failed
// Commit, after a successful one (it does nothing then) and more than once.
func (d *Draft) Abort() error {
	if d.state == draftCommitted || d.state == draftAborted {
		return nil
	}
	d.state = draftAborted
	d.dropBuffer()
	var err error
	if d.file != nil {
		err = d.file.Close()
		d.file, d.w = nil, nil
	}
	if d.path != "" && !d.keep {
		if rerr := os.Remove(d.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
		d.path = ""
	}
	if err != nil {
		return fmt.Errorf("queue: abort %s: %w", d.id, err)
	}
	return nil
}
